"""Fast CMS-barrel-like detector simulation: particles in, 125x125 crystal images out.

The model (documented in docs/DETECTOR.md) is deliberately simple but physical: charged particles bend in
a 3.8 T solenoid, photons and electrons shower in the ECAL, hadrons share their energy between ECAL and
HCAL, calorimeters have stochastic/noise/constant resolution terms and zero suppression, HCAL towers are
5x5 crystals aligned to the detector grid, and tracks carry pT (plus impact parameters and pixel hits in
the 8-channel layout).

Randomness comes from numba's generator, seeded per jet from the shard's seed and the jet's position, so
an image depends only on that, never on the number of worker processes or on the other jets.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from e2ecompress.geometry import DETA, DPHI, HALF, NPIX

# Geometry and detector constants (see docs/DETECTOR.md); the crystal grid
# (DETA, DPHI, NPIX, HALF) is in e2ecompress.geometry.
BFIELD = 3.8  # T
R_ECAL = 1.29  # m
R_HCAL = 1.8  # m
PIXEL_RADII = (0.029, 0.068, 0.109)  # m, CMS Phase-1 barrel pixel layers 1-3
TOWER = 5  # HCAL tower = 5x5 crystals
NTOWER = NPIX // TOWER + 2  # towers touched by a 125-crystal window

ECAL_NOISE = 0.040  # GeV per crystal
ECAL_THRESHOLD = 3.0 * ECAL_NOISE
HCAL_NOISE = 0.2  # GeV per tower
HCAL_THRESHOLD = 0.6
HADRON_ECAL_PROB = 0.6  # hadrons that start showering in the ECAL
MIP_ENERGY = 0.3  # GeV left by a non-interacting charged hadron in the ECAL
TRACK_PT_MIN = 0.5
TRACK_ETA_MAX = 2.5
TRACK_EFFICIENCY = 0.95
TRACK_PT_RESOLUTION = 0.01
D0_RESOLUTION = 0.02  # mm
DZ_RESOLUTION = 0.03  # mm
PIXEL_PT_MIN = 0.1

# Particle kinds, set on the Python side from PDG ids.
KIND_INVISIBLE = 0  # neutrinos
KIND_MUON = 1
KIND_EM = 2  # photons and electrons
KIND_HADRON = 3

# Channel roles: index into the image for each role, -1 when the layout lacks it.
ROLES = ("ECAL", "HCAL", "Tracks", "TrackD0", "TrackDZ", "PixL1", "PixL2", "PixL3")
ROLE_ALIASES = {"TrackPT": "Tracks"}


def channel_roles(channels: tuple[str, ...] | list[str]) -> np.ndarray:
    """Map a layout's channel names to the int64 role table `render_jets` expects."""
    names = [ROLE_ALIASES.get(c, c) for c in channels]
    return np.array([names.index(r) if r in names else -1 for r in ROLES], dtype=np.int64)


@numba.njit(cache=True, inline="always")
def _bend(phi, charge, pt, radius):
    """phi at `radius` for a track from the beam line, or nan if it loops before reaching it."""
    if charge == 0.0:
        return phi
    arg = 0.3 * BFIELD * radius / (2.0 * pt)
    if arg >= 1.0:
        return np.nan
    return phi - charge * math.asin(arg)


@numba.njit(cache=True, inline="always")
def _crystal(eta, phi):
    return math.floor(eta / DETA), math.floor(phi / DPHI)


@numba.njit(cache=True, inline="always")
def _wrap(d):
    # crystal offsets in phi wrap around the 360-crystal ring
    return (d + 180) % 360 - 180


@numba.njit(cache=True, inline="always")
def _in_window(eta, phi, ceta, cphi):
    ieta, iphi = _crystal(eta, phi)
    r = ieta - ceta + HALF
    c = _wrap(iphi - cphi) + HALF
    return 1.0 if (0 <= r < NPIX and 0 <= c < NPIX) else 0.0


@numba.njit(cache=True)
def _deposit_em(ecal, eta, phi, ceta, cphi, energy):
    """Shower `energy` around the crystal hit: ~80% central, the rest in the 3x3 ring. Returns energy kept."""
    ieta, iphi = _crystal(eta, phi)
    r0 = ieta - ceta + HALF
    c0 = _wrap(iphi - cphi) + HALF
    kept = 0.0
    for dr in range(-1, 2):
        for dc in range(-1, 2):
            r = r0 + dr
            c = c0 + dc
            if r < 0 or r >= NPIX or c < 0 or c >= NPIX:
                continue
            n = abs(dr) + abs(dc)
            w = 0.80 if n == 0 else (0.035 if n == 1 else 0.015)
            ecal[r, c] += w * energy
            kept += w * energy
    return kept


@numba.njit(cache=True)
def _ecal_smear(e):
    if e <= 0.0:
        return 0.0
    rel = math.sqrt((0.028 / math.sqrt(e)) ** 2 + (0.12 / e) ** 2 + 0.003**2)
    return max(0.0, e * (1.0 + rel * np.random.standard_normal()))


@numba.njit(cache=True)
def _hcal_smear(e):
    if e <= 0.0:
        return 0.0
    rel = math.sqrt(1.0 / e + 0.05**2)
    return max(0.0, e * (1.0 + rel * np.random.standard_normal()))


@numba.njit(cache=True)
def render_jet(img, roles, ceta, cphi, kind, charge, px, py, pz, energy, vx, vy, vz):
    """Render one jet window. img: [C, 125, 125] float32 zeros; particles are the whole event.

    Vertices are in mm. Returns (ECAL energy deposited in the window, HCAL energy deposited in the window),
    both before resolution and noise: the truth for energy bookkeeping.
    """
    ecal = np.zeros((NPIX, NPIX))
    towers = np.zeros((NTOWER, NTOWER))
    trk = np.zeros((NPIX, NPIX))
    d0w = np.zeros((NPIX, NPIX))
    dzw = np.zeros((NPIX, NPIX))
    pix = np.zeros((3, NPIX, NPIX))
    # tower index of the window's first crystal (absolute, aligned to the detector grid)
    t0_eta = (ceta - HALF) // TOWER
    t0_phi = (cphi - HALF) // TOWER
    ecal_true = 0.0
    hcal_true = 0.0
    for i in range(kind.shape[0]):
        k = kind[i]
        if k == KIND_INVISIBLE:
            continue
        pt = math.hypot(px[i], py[i])
        if pt < 1e-6:
            continue
        eta = math.asinh(pz[i] / pt)
        if abs(eta - (ceta + 0.5) * DETA) > (HALF + 8) * DETA:
            continue  # nowhere near the window
        phi = math.atan2(py[i], px[i])
        q = charge[i]
        if q != 0.0:
            # track at the vertex direction
            if pt > TRACK_PT_MIN and abs(eta) < TRACK_ETA_MAX and np.random.random() < TRACK_EFFICIENCY:
                ieta, iphi = _crystal(eta, phi)
                r = ieta - ceta + HALF
                c = _wrap(iphi - cphi) + HALF
                if 0 <= r < NPIX and 0 <= c < NPIX:
                    pt_meas = pt * (1.0 + TRACK_PT_RESOLUTION * np.random.standard_normal())
                    trk[r, c] += pt_meas
                    d0 = (vy[i] * px[i] - vx[i] * py[i]) / pt + D0_RESOLUTION * np.random.standard_normal()
                    dz = (vz[i] - (vx[i] * px[i] + vy[i] * py[i]) / pt * pz[i] / pt) + (
                        DZ_RESOLUTION * np.random.standard_normal()
                    )
                    d0w[r, c] += pt_meas * d0
                    dzw[r, c] += pt_meas * dz
            # barrel pixel hits along the helix
            if pt > PIXEL_PT_MIN:
                rprod = math.hypot(vx[i], vy[i]) * 1e-3
                for layer in range(3):
                    radius = PIXEL_RADII[layer]
                    if rprod >= radius:
                        continue
                    phih = _bend(phi, q, pt, radius)
                    if np.isnan(phih):
                        break
                    zh = vz[i] * 1e-3 + (radius - rprod) * pz[i] / pt
                    ieta, iphi = _crystal(math.asinh(zh / radius), phih)
                    r = ieta - ceta + HALF
                    c = _wrap(iphi - cphi) + HALF
                    if 0 <= r < NPIX and 0 <= c < NPIX:
                        pix[layer, r, c] += 1.0
        if k == KIND_MUON:
            continue
        phie = _bend(phi, q, pt, R_ECAL)
        if np.isnan(phie):
            continue  # loops inside the tracker
        e = energy[i]
        if k == KIND_EM:
            _deposit_em(ecal, eta, phie, ceta, cphi, _ecal_smear(e))
            ecal_true += _in_window(eta, phie, ceta, cphi) * e
            continue
        # hadrons
        if np.random.random() < HADRON_ECAL_PROB:
            e_ecal = e * (0.1 + 0.4 * np.random.random())
        elif q != 0.0:
            e_ecal = min(MIP_ENERGY, e)
        else:
            e_ecal = 0.0
        if e_ecal > 0.0:
            _deposit_em(ecal, eta, phie, ceta, cphi, _ecal_smear(e_ecal))
            ecal_true += _in_window(eta, phie, ceta, cphi) * e_ecal
        e_h = e - e_ecal
        phih = _bend(phi, q, pt, R_HCAL)
        if np.isnan(phih):
            phih = phi - math.copysign(0.5 * math.pi, q)  # curls up between ECAL and HCAL
        ieta, iphi = _crystal(eta, phih)
        d = _wrap(iphi - cphi)
        ti = ieta // TOWER - t0_eta
        tj = (cphi + d) // TOWER - t0_phi
        if 0 <= ti < NTOWER and 0 <= tj < NTOWER:
            towers[ti, tj] += _hcal_smear(e_h)
            r = ieta - ceta + HALF
            c = d + HALF
            if 0 <= r < NPIX and 0 <= c < NPIX:
                hcal_true += e_h
    # ECAL noise and zero suppression
    ch = roles[0]
    for r in range(NPIX):
        for c in range(NPIX):
            v = ecal[r, c] + ECAL_NOISE * np.random.standard_normal()
            if v > ECAL_THRESHOLD:
                img[ch, r, c] = v
    # HCAL tower noise, threshold, and upsampling to crystals (energy shared over the tower's 25 crystals)
    for ti in range(NTOWER):
        for tj in range(NTOWER):
            v = towers[ti, tj] + HCAL_NOISE * np.random.standard_normal()
            towers[ti, tj] = v if v > HCAL_THRESHOLD else 0.0
    ch = roles[1]
    for r in range(NPIX):
        ti = (ceta - HALF + r) // TOWER - t0_eta
        for c in range(NPIX):
            tj = (cphi - HALF + c) // TOWER - t0_phi
            img[ch, r, c] = towers[ti, tj] / (TOWER * TOWER)
    # tracks
    for r in range(NPIX):
        for c in range(NPIX):
            if trk[r, c] > 0.0:
                if roles[2] >= 0:
                    img[roles[2], r, c] = trk[r, c]
                if roles[3] >= 0:
                    img[roles[3], r, c] = d0w[r, c] / trk[r, c]
                if roles[4] >= 0:
                    img[roles[4], r, c] = dzw[r, c] / trk[r, c]
            for layer in range(3):
                if roles[5 + layer] >= 0:
                    img[roles[5 + layer], r, c] = pix[layer, r, c]
    return ecal_true, hcal_true


@numba.njit(cache=True)
def render_jets(
    out,
    truth,
    roles,
    seeds,
    jet_event,
    jet_ceta,
    jet_cphi,
    ev_offsets,
    kind,
    charge,
    px,
    py,
    pz,
    energy,
    vx,
    vy,
    vz,
):
    """Render many jets. out: [J, C, 125, 125] float32 zeros; truth: [J, 2] (ECAL, HCAL deposited).

    Particles of all events are concatenated; event e owns rows ev_offsets[e]:ev_offsets[e + 1].
    Each jet's detector randomness starts from its own seed, so a jet's image does not depend on which other
    jets are rendered with it or in what order.
    """
    for j in range(jet_event.shape[0]):
        np.random.seed(seeds[j])
        e = jet_event[j]
        a = ev_offsets[e]
        b = ev_offsets[e + 1]
        ecal_true, hcal_true = render_jet(
            out[j],
            roles,
            jet_ceta[j],
            jet_cphi[j],
            kind[a:b],
            charge[a:b],
            px[a:b],
            py[a:b],
            pz[a:b],
            energy[a:b],
            vx[a:b],
            vy[a:b],
            vz[a:b],
        )
        truth[j, 0] = ecal_true
        truth[j, 1] = hcal_true


def jet_centre_crystal(eta: np.ndarray, phi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Absolute crystal indices (eta, phi) of the crystal containing each jet axis."""
    return np.floor(eta / DETA).astype(np.int64), np.floor(phi / DPHI).astype(np.int64)
