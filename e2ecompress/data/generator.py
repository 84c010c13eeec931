"""Pythia 8 + FastJet jet production: events in, labelled jets with their particles out.

One `JetStream` is one Pythia instance for one process class (quark- or gluon-enriched) with its own seed.
`next_jets()` generates a batch of events, clusters anti-kT R=0.4 jets, matches them to the two outgoing hard
partons (event record entries 5 and 6) and returns the jets that pass the cuts together with the flat particle
arrays the detector simulation needs.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import awkward as ak
import numpy as np

from e2ecompress.data import detector

QUARK_PROCESSES = ("HardQCD:qq2qq = on", "HardQCD:qqbar2qqbarNew = on")
GLUON_PROCESSES = ("HardQCD:gg2gg = on", "HardQCD:qqbar2gg = on")
MINBIAS_PROCESSES = ("SoftQCD:nonDiffractive = on",)

COMMON_SETTINGS = (
    "Beams:eCM = 13000.",
    "ParticleDecays:limitTau0 = on",
    "ParticleDecays:tau0Max = 10.",
    "Next:numberCount = 0",
    "Next:numberShowEvent = 0",
    "Next:numberShowInfo = 0",
    "Next:numberShowProcess = 0",
    "Init:showProcesses = off",
    "Init:showMultipartonInteractions = off",
    "Init:showChangedSettings = off",
    "Init:showChangedParticleData = off",
    "Print:quiet = on",
)

BEAMSPOT_SIGMA_Z = 35.0  # mm, spread of pileup vertices along the beam


@dataclass(frozen=True)
class JetCuts:
    pt_min: float = 70.0
    eta_max: float = 1.5
    radius: float = 0.4
    match_dr: float = 0.4
    pthat_min: float = 80.0
    pthat_max: float = 170.0


@contextlib.contextmanager
def quiet_stdout():
    """Silence C/C++ banners written straight to file descriptor 1 (Pythia, FastJet)."""
    import sys

    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(devnull)
        os.close(saved)


def make_pythia(processes: tuple[str, ...], seed: int, cuts: JetCuts | None = None):
    import pythia8mc

    if not 1 <= seed <= 900_000_000:
        raise ValueError(f"Pythia seed must be in [1, 900000000], got {seed}")
    with quiet_stdout():
        pythia = pythia8mc.Pythia("", False)
        for line in (*COMMON_SETTINGS, *processes, "Random:setSeed = on", f"Random:seed = {seed}"):
            pythia.readString(line)
        if cuts is not None:
            pythia.readString(f"PhaseSpace:pTHatMin = {cuts.pthat_min}")
            pythia.readString(f"PhaseSpace:pTHatMax = {cuts.pthat_max}")
        if not pythia.init():
            raise RuntimeError("Pythia failed to initialise")
    return pythia


class _ChargeTable:
    """PDG id -> (charge, kind), filled lazily from Pythia's particle data."""

    def __init__(self, pythia):
        self._pd = pythia.particleData
        self._cache: dict[int, tuple[float, int]] = {}

    def lookup(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        uniq, inv = np.unique(ids, return_inverse=True)
        charge = np.empty(len(uniq))
        kind = np.empty(len(uniq), dtype=np.int64)
        for n, pid in enumerate(uniq.tolist()):
            if pid not in self._cache:
                a = abs(pid)
                if a in (12, 14, 16):
                    k = detector.KIND_INVISIBLE
                elif a == 13:
                    k = detector.KIND_MUON
                elif a in (11, 22):
                    k = detector.KIND_EM
                else:
                    k = detector.KIND_HADRON
                self._cache[pid] = (float(self._pd.charge(pid)), k)
            charge[n], kind[n] = self._cache[pid]
        return charge[inv], kind[inv]


@dataclass
class Particles:
    """Final-state particles of several events, concatenated; event e is rows offsets[e]:offsets[e+1]."""

    offsets: np.ndarray
    pid: np.ndarray
    charge: np.ndarray
    kind: np.ndarray
    px: np.ndarray
    py: np.ndarray
    pz: np.ndarray
    e: np.ndarray
    vx: np.ndarray
    vy: np.ndarray
    vz: np.ndarray


def _final_particles(batch, table: _ChargeTable) -> tuple[ak.Array, Particles]:
    prt = batch.prt
    fin = prt[prt.status > 0]
    counts = ak.to_numpy(ak.num(fin))
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    flat = ak.flatten(fin)
    pid = ak.to_numpy(flat.id).astype(np.int64)
    charge, kind = table.lookup(pid)

    def vertex(field):
        return ak.to_numpy(ak.fill_none(getattr(flat.vProd, field), 0.0)).astype(np.float64)

    parts = Particles(
        offsets=offsets,
        pid=pid,
        charge=charge,
        kind=kind,
        px=ak.to_numpy(flat.p.px).astype(np.float64),
        py=ak.to_numpy(flat.p.py).astype(np.float64),
        pz=ak.to_numpy(flat.p.pz).astype(np.float64),
        e=ak.to_numpy(flat.p.e).astype(np.float64),
        vx=vertex("px"),
        vy=vertex("py"),
        vz=vertex("pz"),
    )
    return prt, parts


def overlay_pileup(parts: Particles, pool: Particles, mu: float, rng: np.random.Generator) -> Particles:
    """Add Poisson(mu) minimum-bias events drawn from `pool` to every event, each at its own vertex z."""
    n_pool = len(pool.offsets) - 1
    fields = ("pid", "charge", "kind", "px", "py", "pz", "e", "vx", "vy", "vz")
    pieces: dict[str, list[np.ndarray]] = {f: [] for f in fields}
    counts = []
    for ev in range(len(parts.offsets) - 1):
        a, b = parts.offsets[ev], parts.offsets[ev + 1]
        n = 0
        for f in fields:
            pieces[f].append(getattr(parts, f)[a:b])
        n += b - a
        for k in rng.integers(0, n_pool, size=rng.poisson(mu)):
            pa, pb = pool.offsets[k], pool.offsets[k + 1]
            dz = rng.normal(0.0, BEAMSPOT_SIGMA_Z)
            for f in fields:
                v = getattr(pool, f)[pa:pb]
                pieces[f].append(v + dz if f == "vz" else v)
            n += pb - pa
        counts.append(n)
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return Particles(offsets=offsets, **{f: np.concatenate(pieces[f]) for f in fields})


def _cluster(parts: Particles, cuts: JetCuts):
    import fastjet

    visible = parts.kind != detector.KIND_INVISIBLE
    cum = np.concatenate([[0], np.cumsum(visible)])
    counts = cum[parts.offsets[1:]] - cum[parts.offsets[:-1]]
    idx = np.nonzero(visible)[0]
    arr = ak.unflatten(
        ak.zip({"px": parts.px[idx], "py": parts.py[idx], "pz": parts.pz[idx], "E": parts.e[idx]}),
        counts,
    )
    jetdef = fastjet.JetDefinition(fastjet.antikt_algorithm, cuts.radius)
    with quiet_stdout():
        cs = fastjet.ClusterSequence(arr, jetdef)
        jets = cs.inclusive_jets(min_pt=cuts.pt_min)
        cons = cs.constituent_index(min_pt=cuts.pt_min)
    # constituent indices are within each event's visible particles: map back to rows of `parts`
    vis_offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=vis_offsets[1:])
    return jets, cons, idx, vis_offsets


def _delta_r(eta1, phi1, eta2, phi2):
    dphi = (phi1 - phi2 + np.pi) % (2 * np.pi) - np.pi
    return np.hypot(eta1 - eta2, dphi)


@dataclass
class JetBatch:
    """Jets found in one batch of events, and the particles of those events."""

    parts: Particles
    event: np.ndarray  # index of the jet's event in `parts`
    pt: np.ndarray
    eta: np.ndarray
    phi: np.ndarray
    m0: np.ndarray
    parton_id: np.ndarray  # PDG id of the matched hard parton, 0 if none
    n_constituents: np.ndarray
    n_charged: np.ndarray
    girth: np.ndarray
    ptd: np.ndarray

    def __len__(self) -> int:
        return len(self.pt)

    def select(self, keep: np.ndarray) -> JetBatch:
        out = {k: v[keep] for k, v in self.__dict__.items() if k != "parts"}
        return JetBatch(parts=self.parts, **out)


class JetStream:
    """Jets from one Pythia instance (one process class, one seed)."""

    def __init__(
        self,
        processes,
        seed: int,
        cuts: JetCuts,
        events_per_batch: int = 100,
        pileup_mu: float = 0.0,
        pileup_seed: int | None = None,
        pileup_pool: int = 400,
    ):
        self.cuts = cuts
        self.events_per_batch = events_per_batch
        self.pythia = make_pythia(processes, seed, cuts)
        self._charges = _ChargeTable(self.pythia)
        self.pileup_mu = pileup_mu
        self._pool: Particles | None = None
        if pileup_mu > 0:
            # a pool of minimum-bias events, sampled with replacement (premixing)
            pseed = pileup_seed if pileup_seed is not None else (seed % 899_999_999) + 1
            mb = make_pythia(MINBIAS_PROCESSES, pseed)
            with quiet_stdout():
                batch = mb.nextBatch(pileup_pool)
            _, self._pool = _final_particles(batch, _ChargeTable(mb))
            self._rng = np.random.default_rng(seed)

    def next_jets(self) -> JetBatch:
        with quiet_stdout():
            batch = self.pythia.nextBatch(self.events_per_batch)
        prt, parts = _final_particles(batch, self._charges)
        partons = prt[:, 5:7]
        p_id = ak.to_numpy(partons.id)
        p_px, p_py, p_pz = (ak.to_numpy(getattr(partons.p, f)) for f in ("px", "py", "pz"))
        p_pt = np.hypot(p_px, p_py)
        p_eta = np.arcsinh(p_pz / p_pt)
        p_phi = np.arctan2(p_py, p_px)
        if self._pool is not None:
            parts = overlay_pileup(parts, self._pool, self.pileup_mu, self._rng)
        jets, cons, vis_idx, vis_offsets = _cluster(parts, self.cuts)
        return self._describe(parts, jets, cons, vis_idx, vis_offsets, p_id, p_eta, p_phi)

    def _describe(self, parts, jets, cons, vis_idx, vis_offsets, p_id, p_eta, p_phi) -> JetBatch:
        n_jets = ak.to_numpy(ak.num(jets))
        event = np.repeat(np.arange(len(n_jets)), n_jets)
        flat = ak.flatten(jets)
        px, py, pz, e = (ak.to_numpy(flat[f]).astype(np.float64) for f in ("px", "py", "pz", "E"))
        pt = np.hypot(px, py)
        eta = np.arcsinh(pz / np.maximum(pt, 1e-12))
        phi = np.arctan2(py, px)
        m0 = np.sqrt(np.maximum(e**2 - px**2 - py**2 - pz**2, 0.0))
        # parton matching: nearest of the two hard partons within match_dr
        dr = _delta_r(eta[:, None], phi[:, None], p_eta[event], p_phi[event])
        best = np.argmin(dr, axis=1)
        matched = dr[np.arange(len(best)), best] < self.cuts.match_dr
        parton_id = np.where(matched, p_id[event, best], 0)
        # substructure from constituents
        cons_flat = ak.flatten(cons, axis=1)
        n_cons = ak.to_numpy(ak.num(cons_flat))
        rows = vis_idx[ak.to_numpy(ak.flatten(cons_flat)) + np.repeat(vis_offsets[event], n_cons)]
        c_pt = np.hypot(parts.px[rows], parts.py[rows])
        c_eta = np.arcsinh(parts.pz[rows] / np.maximum(c_pt, 1e-12))
        c_phi = np.arctan2(parts.py[rows], parts.px[rows])
        jet_of = np.repeat(np.arange(len(pt)), n_cons)
        c_dr = _delta_r(c_eta, c_phi, eta[jet_of], phi[jet_of])
        sum_pt = np.bincount(jet_of, weights=c_pt, minlength=len(pt))
        girth = np.bincount(jet_of, weights=c_pt * c_dr, minlength=len(pt)) / np.maximum(sum_pt, 1e-12)
        ptd = np.sqrt(np.bincount(jet_of, weights=c_pt**2, minlength=len(pt))) / np.maximum(sum_pt, 1e-12)
        n_charged = np.bincount(jet_of, weights=(parts.charge[rows] != 0), minlength=len(pt)).astype(np.int64)
        out = JetBatch(
            parts,
            event,
            pt,
            eta,
            phi,
            m0,
            parton_id.astype(np.int64),
            n_cons.astype(np.int64),
            n_charged,
            girth,
            ptd,
        )
        keep = (pt > self.cuts.pt_min) & (np.abs(eta) < self.cuts.eta_max)
        return out.select(keep)


def render(
    jb: JetBatch, roles: np.ndarray, n_channels: int, seeds: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Detector images [J, C, 125, 125] float32 and deposited-energy truth [J, 2] for the jets of `jb`."""
    out = np.zeros((len(jb), n_channels, detector.NPIX, detector.NPIX), dtype=np.float32)
    truth = np.zeros((len(jb), 2))
    ceta, cphi = detector.jet_centre_crystal(jb.eta, jb.phi)
    p = jb.parts
    detector.render_jets(
        out,
        truth,
        roles,
        np.asarray(seeds, dtype=np.int64),
        jb.event.astype(np.int64),
        ceta,
        cphi,
        p.offsets,
        p.kind,
        p.charge,
        p.px,
        p.py,
        p.pz,
        p.e,
        p.vx,
        p.vy,
        p.vz,
    )
    return out, truth


def concat_jets(batches: list[JetBatch]) -> JetBatch:
    """Merge jet batches from different event batches into one (particle rows and event indices shifted)."""
    fields = ("pid", "charge", "kind", "px", "py", "pz", "e", "vx", "vy", "vz")
    offsets = [np.zeros(1, dtype=np.int64)]
    events = []
    n_rows = 0
    n_events = 0
    for b in batches:
        offsets.append(b.parts.offsets[1:] + n_rows)
        events.append(b.event + n_events)
        n_rows += int(b.parts.offsets[-1])
        n_events += len(b.parts.offsets) - 1
    parts = Particles(
        offsets=np.concatenate(offsets),
        **{f: np.concatenate([getattr(b.parts, f) for b in batches]) for f in fields},
    )
    cols = {
        k: np.concatenate([getattr(b, k) for b in batches])
        for k in JetBatch.__dataclass_fields__
        if k not in ("parts", "event")
    }
    return JetBatch(parts=parts, event=np.concatenate(events), **cols)
