"""The .e2ez container (docs/FORMAT.md): a JSON header, independently decodable chunks, attachments.

with ContainerWriter("jets.e2ez", header) as w:
    w.write_chunk(n_jets, {"occ": b"...", "latent": b"..."}, table)   # table: the other columns, n_jets rows
    w.add_attachment("model.safetensors", data)

with ContainerReader("jets.e2ez") as r:
    for chunk in r.iter_chunks(start, stop):   # reads only the chunks holding jets [start, stop)
        chunk.streams["latent"], chunk.table
"""

from e2ecompress.format.container import FORMAT_VERSION, MAGIC, Chunk, ChunkInfo
from e2ecompress.format.reader import ContainerReader
from e2ecompress.format.writer import ContainerWriter

__all__ = ["FORMAT_VERSION", "MAGIC", "Chunk", "ChunkInfo", "ContainerReader", "ContainerWriter"]
