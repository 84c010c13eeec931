"""Image-level physics: jet kinematics and substructure computed from detector images.

Pixels are treated as massless deposits at the crystal centres; eta of a pixel is the jet eta (when known)
plus its row offset, phi is the column offset. These are the quantities used to judge decoded images
(energy sums, jet pT and mass) and the substructure features of the physics baseline.
"""

from __future__ import annotations

import numpy as np

from e2ecompress.geometry import DETA, DPHI, HALF

CALO_CHANNELS = ("ECAL", "HCAL")
JET_RADIUS = 0.4  # anti-kT R of the generated jets
TRACK_CHANNELS = ("Tracks", "TrackPT")


def _find(channels, names) -> list[int]:
    return [i for i, c in enumerate(channels) if c in names]


def _grid(n: int) -> np.ndarray:
    return (np.arange(n) - HALF).astype(np.float64)


def _cone(h: int, w: int, radius: float | None) -> np.ndarray:
    """[H, W] weights: 1 for pixels within `radius` of the window centre (all pixels when None)."""
    if radius is None:
        return np.ones((h, w))
    dr = np.hypot(_grid(h)[:, None] * DETA, _grid(w)[None, :] * DPHI)
    return (dr < radius).astype(np.float64)


def calo_energy(images: np.ndarray, channels, radius: float | None = None) -> np.ndarray:
    """Sum of the calorimeter channels per pixel, inside `radius` of the centre: [B, H, W] (float64)."""
    idx = _find(channels, CALO_CHANNELS)
    if not idx:
        raise ValueError(f"no calorimeter channel among {list(channels)}")
    e = images[:, idx].astype(np.float64).sum(axis=1)
    return e if radius is None else e * _cone(e.shape[1], e.shape[2], radius)


def channel_sums(images: np.ndarray) -> np.ndarray:
    """Per-jet, per-channel sums: [B, C]."""
    return images.astype(np.float64).sum(axis=(2, 3))


def jet_kinematics(
    images: np.ndarray, channels, eta: np.ndarray | None = None, radius: float | None = JET_RADIUS
) -> dict[str, np.ndarray]:
    """Image-level jet pT, mass and energy from the calorimeter pixels within `radius` of the centre.

    images: [B, C, H, W]; eta: [B] jet eta (window centre), 0 when unknown; radius None: whole window.
    """
    e = calo_energy(images, channels, radius)
    b, h, w = e.shape
    eta0 = np.zeros(b) if eta is None else np.asarray(eta, dtype=np.float64)
    pix_eta = eta0[:, None] + _grid(h)[None, :] * DETA  # [B, H]
    pix_phi = _grid(w) * DPHI  # [W]
    pt_pix = e / np.cosh(pix_eta)[:, :, None]
    px = np.einsum("bhw,w->b", pt_pix, np.cos(pix_phi))
    py = np.einsum("bhw,w->b", pt_pix, np.sin(pix_phi))
    pz = np.einsum("bhw,bh->b", e, np.tanh(pix_eta))
    energy = e.sum(axis=(1, 2))
    pt = np.hypot(px, py)
    mass = np.sqrt(np.maximum(energy**2 - pt**2 - pz**2, 0.0))
    return {"pt": pt, "mass": mass, "energy": energy}


def substructure(
    images: np.ndarray, channels, eta: np.ndarray | None = None, radius: float | None = JET_RADIUS
) -> dict[str, np.ndarray]:
    """Image-level substructure within `radius`: multiplicities, girth, pTD, mass (as in `jet_kinematics`)."""
    e = calo_energy(images, channels, radius)
    cone = _cone(e.shape[1], e.shape[2], radius)
    b, h, w = e.shape
    eta0 = np.zeros(b) if eta is None else np.asarray(eta, dtype=np.float64)
    pt_pix = e / np.cosh(eta0[:, None, None] + _grid(h)[None, :, None] * DETA)
    tot = np.maximum(pt_pix.sum(axis=(1, 2)), 1e-12)
    deta = _grid(h)[None, :, None] * DETA
    dphi = _grid(w)[None, None, :] * DPHI
    c_eta = (pt_pix * deta).sum(axis=(1, 2)) / tot
    c_phi = (pt_pix * dphi).sum(axis=(1, 2)) / tot
    dr = np.sqrt((deta - c_eta[:, None, None]) ** 2 + (dphi - c_phi[:, None, None]) ** 2)
    out = {
        "girth": (pt_pix * dr).sum(axis=(1, 2)) / tot,
        "ptd": np.sqrt((pt_pix**2).sum(axis=(1, 2))) / tot,
        "mass": jet_kinematics(images, channels, eta, radius)["mass"],
        "n_calo": (e > 0).sum(axis=(1, 2)).astype(np.float64),
    }
    trk = _find(channels, TRACK_CHANNELS)
    if trk:
        out["n_tracks"] = ((images[:, trk[0]] > 0) * cone).sum(axis=(1, 2))
    ecal = _find(channels, ("ECAL",))
    if ecal:
        out["n_ecal"] = ((images[:, ecal[0]] > 0) * cone).sum(axis=(1, 2))
    return out
