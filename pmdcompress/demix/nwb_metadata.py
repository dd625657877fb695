"""Session metadata for the NWB export: a small YAML file (or dict), checked before any work.

Example (``session.yaml``; every key but ``imaging`` and ``subject`` fields is NWBFile's)::

    session_description: V1 layer 2/3, drifting gratings, awake head-fixed
    session_start_time: 2026-03-14T10:31:00-05:00   # with its time zone
    experimenter: ["Doe, Jane"]                       # "Last, First"
    institution: Example University
    lab: Example Lab
    experiment_description: Orientation tuning in V1 with GCaMP6f
    keywords: [two-photon, calcium imaging, V1]
    subject:
      subject_id: m123
      species: Mus musculus                           # Latin binomial
      sex: F                                          # M, F, U or O
      age: P90D                                       # ISO 8601 duration (or date_of_birth)
      genotype: C57BL/6J
      description: head-fixed, awake
    imaging:
      indicator: GCaMP6f
      location: VISp                                  # mouse: an Allen CCF name or acronym
      excitation_lambda: 920                          # nm
      emission_lambda: 510                            # nm
      device: Bruker Ultima 2P+
      pixel_size_um: [1.1, 1.1]                       # (y, x), optional

nwbinspector's DANDI configuration needs the subject (id, species, sex, age or
date of birth), wavelengths in nm, and (for mouse) an Allen CCF location.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

from ..errors import InputError

FILE_KEYS = ("session_description", "session_start_time", "identifier", "experimenter", "lab", "institution",
             "experiment_description", "session_id", "keywords", "related_publications")
SUBJECT_KEYS = ("subject_id", "species", "sex", "age", "date_of_birth", "genotype", "strain", "description",
                "weight")
IMAGING_KEYS = ("indicator", "location", "excitation_lambda", "emission_lambda", "device", "channel",
                "description", "pixel_size_um")


def load_nwb_metadata(source) -> dict:
    """The checked session metadata from a YAML path or a dict (see the module docstring).

    Raises
    ------
    InputError
        Unreadable YAML, unknown keys, a session start without time zone, bad wavelengths.
    """
    if isinstance(source, dict):
        where, raw = "nwb metadata", source
    else:
        where = os.fspath(source)
        try:
            import yaml
        except ImportError as exc:  # pragma: no cover - pyyaml comes with the nwb extra
            raise ImportError("reading NWB metadata needs PyYAML: pip install 'pmdcompress[nwb]'") from exc
        try:
            raw = yaml.safe_load(Path(where).read_text())
        except FileNotFoundError:
            raise InputError(f"{where}: no such file") from None
        except (OSError, yaml.YAMLError) as exc:
            raise InputError(f"{where}: not readable YAML ({' '.join(str(exc).split())[:160]})") from None
    if not isinstance(raw, dict):
        raise InputError(f"{where}: expected a mapping of NWB session fields, found {type(raw).__name__}")
    _known(raw, FILE_KEYS + ("subject", "imaging"), where, "")
    meta = {k: v for k, v in raw.items() if k in FILE_KEYS and v is not None}
    if "session_start_time" in meta:
        meta["session_start_time"] = _start_time(meta["session_start_time"], where)
    for key in ("experimenter", "keywords", "related_publications"):
        if key in meta and isinstance(meta[key], str):
            meta[key] = [meta[key]]
    for key in ("identifier", "session_id", "session_description"):
        if key in meta:
            meta[key] = str(meta[key])
    subject = _section(raw, "subject", SUBJECT_KEYS, where)
    if subject is not None:
        if "date_of_birth" in subject:
            subject["date_of_birth"] = _start_time(subject["date_of_birth"], where, "subject.date_of_birth")
        for k in ("subject_id", "species", "sex", "age", "genotype", "strain", "description"):
            if k in subject:
                subject[k] = str(subject[k])
        meta["subject"] = subject
    imaging = _section(raw, "imaging", IMAGING_KEYS, where)
    if imaging is not None:
        for k in ("excitation_lambda", "emission_lambda"):
            if k in imaging:
                try:
                    nm = float(imaging[k])
                except (TypeError, ValueError):
                    nm = -1.0
                if not 200 <= nm <= 2000:
                    raise InputError(f"{where}: imaging.{k} {imaging[k]!r}: expected a wavelength in nm")
                imaging[k] = nm
        if "pixel_size_um" in imaging:
            size = imaging["pixel_size_um"]
            size = [size, size] if isinstance(size, (int, float)) else list(size)
            if len(size) != 2 or not all(isinstance(v, (int, float)) and v > 0 for v in size):
                raise InputError(f"{where}: imaging.pixel_size_um {imaging['pixel_size_um']!r}: expected (y, x) > 0")
            imaging["pixel_size_um"] = [float(v) for v in size]
        meta["imaging"] = imaging
    return meta


def _section(raw: dict, name: str, keys, where: str) -> dict | None:
    """The nested mapping ``raw[name]`` with its keys checked and empty values dropped (None when absent)."""
    section = raw.get(name)
    if section is None:
        return None
    if not isinstance(section, dict):
        raise InputError(f"{where}: '{name}' must be a mapping")
    _known(section, keys, where, f"{name}.")
    return {k: v for k, v in section.items() if v is not None}


def _known(d: dict, keys, where: str, prefix: str) -> None:
    unknown = [k for k in d if k not in keys]
    if unknown:
        raise InputError(f"{where}: unknown key {prefix}{unknown[0]!r}; known: {', '.join(keys)}")


def _start_time(value, where: str, key: str = "session_start_time") -> datetime.datetime:
    if isinstance(value, datetime.datetime):
        stamp = value
    elif isinstance(value, datetime.date):
        raise InputError(f"{where}: {key} {value!r} is a date; give a time with its zone,"
                         " e.g. 2026-03-14T10:31:00-05:00")
    else:
        try:
            stamp = datetime.datetime.fromisoformat(str(value))
        except ValueError:
            raise InputError(f"{where}: {key} {value!r}: expected ISO 8601, e.g. 2026-03-14T10:31:00-05:00") from None
    if stamp.tzinfo is None:
        raise InputError(f"{where}: {key} {value!r} has no time zone; add one, e.g. -05:00 or Z")
    return stamp
