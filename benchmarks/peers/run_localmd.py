#!/usr/bin/env python3
"""Run the peer tool localmd 0.0.4 on one TIFF movie, for side-by-side benchmarks.

Runs INSIDE the venv made by setup_localmd.sh (benchmarks/.venv-localmd):

    benchmarks/.venv-localmd/bin/python benchmarks/peers/run_localmd.py \
        MOVIE.tif OUT_DIR [--config best|default] [--threads 2]

Writes to OUT_DIR:
  localmd_factors.npz   plain np.savez (no pickle) of what is needed to rebuild
                        the denoised movie; its size is localmd's "bytes on disk"
  localmd_denoised.npy  (T, Y, X) float32 denoised movie in movie units
  localmd_result.json   timings, memory, sizes, rank, checks

Reconstruction (the localmd / PMDArray convention):
  frames_flat (Y*X, T) = U @ (R * s) @ Vt          # noise-normalized, centered
  movie[:, :, t]       = frames_flat[:, t].reshape((Y, X), order=fov_order)
                         * noise_var_img + mean_img
localmd's "noise_var_img" (std_img in localmd 0.0.4) is a per-pixel noise
*standard deviation* (sqrt of the high-frequency PSD): data were divided by it.
"""
import argparse
import json
import os
import sys
import time


def _limit_cpus(n):
    """Keep the process (and XLA / torch thread pools) on at most n CPUs.

    Must run before jax/torch are imported. Returns a description."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return "affinity not available; library defaults"
    if len(cpus) > n:
        os.sched_setaffinity(0, cpus[:n])
        return "pinned to CPUs %s (of %d)" % (cpus[:n], len(cpus))
    return "default (process sees %d CPUs <= %d)" % (len(cpus), n)


# localmd 0.0.4's noise estimate (preprocessing_utils.get_noise_estimate) uses a
# 256-sample Welch segment and averages PSD bins 65..128.
MIN_FRAMES = 256


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("movie", help="multipage TIFF, frames as pages (T, Y, X)")
    p.add_argument("out_dir")
    p.add_argument("--config", choices=["best", "default"], default="best")
    p.add_argument("--threads", type=int, default=2,
                   help="CPU cores to use (default 2, this machine's count)")
    p.add_argument("--chunk", type=int, default=256,
                   help="frames per reconstruction chunk (default 256)")
    p.add_argument("--check-frames", type=int, default=200,
                   help="frames used by the reconstruction sanity check")
    return p.parse_args(argv)


def _vm_hwm():
    # The process's own high-water mark. ru_maxrss is not: after fork + exec it
    # keeps the parent's peak, so a benchmark parent's memory would leak in.
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def peak_rss():
    import resource
    # Linux reports ru_maxrss in KiB.
    self_b = _vm_hwm() or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    child_b = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    return self_b, child_b


def run_decomposition(localmd, dataset, config):
    """The exact localmd call for each config (timed by the caller)."""
    decomp = localmd.decomposition.localmd_decomposition
    if config == "best":
        return decomp(dataset, [16, 16], [6, 6], 5000,
                      max_components=50, background_rank=5, sim_conf=5,
                      tiff_batch_size=500, dtype="float32", order="F",
                      num_workers=0)
    # "default": localmd 0.0.4 requires block_sizes, overlap and frame_range
    # positionally; everything else is left at localmd's own defaults
    # (max_components=50, background_rank=15, sim_conf=5, batching=10,
    #  tiff_batch_size=10000, dtype="float32", order="F", num_workers=0,
    #  pixel_batch_size=5000, max_consec_failures=1).
    return decomp(dataset, [16, 16], [6, 6], 5000)


def corr(a, b):
    import numpy as np
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    a = a - a.mean()
    b = b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else float("nan")


def main(argv=None):
    args = parse_args(argv)
    threads_desc = {"affinity": _limit_cpus(args.threads)}

    import numpy as np  # after _limit_cpus, so BLAS pools see the CPU limit
    np.random.seed(0)  # localmd draws all its randomness (incl. jax keys) from np.random

    import importlib.metadata as md

    import jax
    import localmd
    import localmd.decomposition
    import scipy.sparse
    import tifffile
    import torch
    from localmd.dataset import MultipageTiffDataset

    if torch.get_num_threads() != args.threads:
        before = torch.get_num_threads()
        torch.set_num_threads(args.threads)
        threads_desc["torch"] = "set_num_threads(%d) (default was %d)" % (args.threads, before)
    else:
        threads_desc["torch"] = "default (%d threads)" % torch.get_num_threads()
    threads_desc["jax"] = ("default: XLA CPU uses every CPU the process may run on (%d)"
                           % len(os.sched_getaffinity(0)))

    os.makedirs(args.out_dir, exist_ok=True)
    movie_path = os.path.abspath(args.movie)
    dataset = MultipageTiffDataset(movie_path)
    d1, d2, T = dataset.shape  # localmd convention: (Y, X, T)
    print("movie %s: T=%d Y=%d X=%d, config=%s" % (movie_path, T, d1, d2, args.config), flush=True)

    versions = {"config": args.config, "localmd_version": md.version("localmd"),
                "torch_version": torch.__version__, "jax_version": jax.__version__,
                "T": int(T), "Y": int(d1), "X": int(d2), "threads": threads_desc,
                "movie": movie_path}
    short_note = None
    if T < MIN_FRAMES:
        short_note = ("localmd 0.0.4 needs >= %d frames: its per-pixel noise estimate takes "
                      "Welch PSD bins 65..128 of a 256-sample segment; with T=%d the noise "
                      "image comes out NaN (T > 128) or welch raises (T <= 128)"
                      % (MIN_FRAMES, T))
        print("WARNING: " + short_note, flush=True)

    t0 = time.perf_counter()
    c0 = time.process_time()
    try:
        out = run_decomposition(localmd, dataset, args.config)
    except Exception as exc:  # record the failure for the benchmark table
        wall_s = time.perf_counter() - t0
        rss_self, rss_child = peak_rss()
        result = dict(versions, error="%s: %s" % (type(exc).__name__, exc), wall_s=wall_s,
                      peak_rss_bytes=rss_self, peak_rss_incl_children_bytes=rss_self + rss_child,
                      short_movie_note=short_note)
        with open(os.path.join(args.out_dir, "localmd_result.json"), "w") as fh:
            json.dump(result, fh, indent=2)
        print("localmd failed: %s" % result["error"], file=sys.stderr, flush=True)
        raise
    wall_s = time.perf_counter() - t0
    cpu_s = time.process_time() - c0
    rss_self, rss_child = peak_rss()
    print("decomposition: %.2f s, peak RSS %.1f MiB" % (wall_s, rss_self / 2**20), flush=True)

    # localmd 0.0.4 returns a plain tuple.
    U, R, s, Vt, std_img, mean_img, shape, order = out
    returned_dtypes = {k: str(getattr(v, "dtype", type(v).__name__)) for k, v in
                       dict(U=U, R=R, s=s, Vt=Vt, std_img=std_img, mean_img=mean_img).items()}
    U = scipy.sparse.csr_matrix(U)
    U.sum_duplicates()
    U.sort_indices()
    R = np.asarray(R)
    s = np.asarray(s)
    Vt = np.asarray(Vt)
    std_img = np.asarray(std_img, dtype=np.float32)
    mean_img = np.asarray(mean_img, dtype=np.float32)
    assert tuple(shape) == (d1, d2, T), (shape, (d1, d2, T))
    assert U.shape[0] == d1 * d2 and U.shape[1] == R.shape[0]
    assert R.shape[1] == s.shape[0] == Vt.shape[0] and Vt.shape[1] == T
    n_bad = int(sum((~np.isfinite(a)).sum() for a in (U.data, R, s, Vt, std_img, mean_img)))
    if n_bad:
        print("WARNING: localmd returned %d non-finite factor values" % n_bad, flush=True)

    # --- factors: plain numeric arrays only (loadable with allow_pickle=False).
    # localmd builds U from Python float lists (float64); the run asked for
    # dtype="float32" and R/s/Vt are float32, so U's values are stored as float32.
    idx_dtype = np.int32 if max(U.nnz, U.shape[0]) < 2**31 else np.int64
    factors = dict(
        U_data=U.data.astype(np.float32),
        U_indices=U.indices.astype(idx_dtype),
        U_indptr=U.indptr.astype(idx_dtype),
        U_shape=np.array(U.shape, dtype=np.int64),
        R=R.astype(np.float32),
        s=s.astype(np.float32),
        Vt=Vt.astype(np.float32),
        mean_img=mean_img,
        noise_var_img=std_img,  # localmd's std_img: per-pixel noise std
        fov_shape=np.array([T, d1, d2], dtype=np.int64),  # (T, Y, X)
        fov_order=np.frombuffer(str(order).encode("ascii"), dtype=np.uint8).copy(),  # b"F"
    )
    factors_path = os.path.join(args.out_dir, "localmd_factors.npz")
    np.savez(factors_path, **factors)
    factors_bytes = os.path.getsize(factors_path)

    # --- reconstruction from the saved factors, in frame chunks.
    f = np.load(factors_path, allow_pickle=False)
    order_s = bytes(f["fov_order"]).decode("ascii")
    Uc = scipy.sparse.csr_matrix((f["U_data"], f["U_indices"], f["U_indptr"]),
                                 shape=tuple(f["U_shape"]))
    Rs = f["R"] * f["s"][None, :]
    Vt_f = f["Vt"]
    mu = f["mean_img"]
    sd = f["noise_var_img"]

    def frames(t_start, t_stop, fov_order=order_s):
        flat = Uc @ (Rs @ Vt_f[:, t_start:t_stop])  # (Y*X, n)
        mov = flat.reshape((d1, d2, t_stop - t_start), order=fov_order)
        mov = mov * sd[:, :, None] + mu[:, :, None]
        return np.ascontiguousarray(mov.transpose(2, 0, 1), dtype=np.float32)

    den_path = os.path.join(args.out_dir, "localmd_denoised.npy")
    den = np.lib.format.open_memmap(den_path, mode="w+", dtype=np.float32, shape=(T, d1, d2))
    t_rec = time.perf_counter()
    den_sum = np.zeros((d1, d2), dtype=np.float64)
    for a in range(0, T, args.chunk):
        b = min(T, a + args.chunk)
        chunk = frames(a, b)
        den[a:b] = chunk
        den_sum += chunk.sum(0, dtype=np.float64)
    den.flush()
    recon_s = time.perf_counter() - t_rec

    # --- sanity check of the axis order against the raw movie.
    # (a) mean image over ALL frames, denoised vs raw (raw read in chunks).
    #     On a short window the raw mean is itself noisy (on the optinist movie
    #     the 200-frame raw mean correlates only ~0.91 with the full-movie mean),
    #     so the whole movie is used for the > 0.99 criterion; the first-window
    #     figure and that raw-vs-raw baseline are reported alongside.
    # (b) the mean image is added back, so it barely depends on the flattening
    #     order; the fluctuations around it do: compare them on the first frames
    #     for the order used and the opposite one.
    n_chk = min(args.check_frames, T)
    raw_sum = np.zeros((d1, d2), dtype=np.float64)
    with tifffile.TiffFile(movie_path) as tf:
        for a in range(0, T, args.chunk):
            b = min(T, a + args.chunk)
            r = tf.asarray(key=range(a, b)).astype(np.float32).reshape(b - a, d1, d2)
            raw_sum += r.sum(0, dtype=np.float64)
            if a == 0:
                raw_first = r[:n_chk].copy()
            elif raw_first.shape[0] < n_chk:
                raw_first = np.concatenate([raw_first, r[:n_chk - raw_first.shape[0]]])
    den_first = np.asarray(den[:n_chk])
    mean_corr = corr(den_sum / T, raw_sum / T)
    mean_corr_first = corr(den_first.mean(0), raw_first.mean(0))
    raw_first_vs_raw_all = corr(raw_first.mean(0), raw_sum / T)
    fluct_corr = corr(den_first - mu, raw_first - mu)
    other = "C" if order_s == "F" else "F"
    fluct_corr_other = corr(frames(0, n_chk, other) - mu, raw_first - mu)
    finite = bool(np.isfinite(den_sum).all())
    ok = bool(mean_corr > 0.99 and fluct_corr > fluct_corr_other and finite)
    print("check: mean-image corr (all %d frames) %.6f; first %d frames %.5f "
          "(raw first-%d mean vs raw all-frame mean: %.5f); fluctuation corr on first "
          "%d frames %.4f (order %s) vs %.4f (order %s); finite=%s -> %s"
          % (T, mean_corr, n_chk, mean_corr_first, n_chk, raw_first_vs_raw_all, n_chk,
             fluct_corr, order_s, fluct_corr_other, other, finite,
             "OK" if ok else "FAILED"), flush=True)
    del den, den_first, raw_first

    rss_self_end, rss_child_end = peak_rss()
    result = {
        "wall_s": wall_s,
        "cpu_s": cpu_s,
        "peak_rss_bytes": rss_self,
        "peak_rss_children_bytes": rss_child,
        "peak_rss_incl_children_bytes": rss_self + rss_child,
        "peak_rss_bytes_end_of_run": rss_self_end,
        "peak_rss_incl_children_bytes_end_of_run": rss_self_end + rss_child_end,
        "factors_bytes": factors_bytes,
        "rank": int(s.shape[0]),
        "U_columns": int(U.shape[1]),
        "U_nnz": int(U.nnz),
        "returned_dtypes": returned_dtypes,
        **{k: versions[k] for k in ("config", "localmd_version", "torch_version",
                                    "jax_version", "T", "Y", "X")},
        "mean_image_correlation_check": {
            "mean_image_corr": mean_corr,
            "mean_image_corr_frames": int(T),
            "mean_image_corr_first_frames": mean_corr_first,
            "first_frames": int(n_chk),
            "raw_first_frames_mean_vs_raw_all_mean": raw_first_vs_raw_all,
            "fluctuation_corr": fluct_corr,
            "fluctuation_corr_wrong_order": fluct_corr_other,
            "finite": finite,
            "passed": ok,
        },
        "nonfinite_factor_values": n_bad,
        "reconstruction_s": recon_s,
        "threads": threads_desc,
        "cpu_count": os.cpu_count(),
        "movie": movie_path,
        "short_movie_note": short_note,
        "notes": ("wall_s times only localmd_decomposition (incl. JAX JIT compile and TIFF reads); "
                  "peak_rss_bytes = ru_maxrss right after it (imports + decomposition); "
                  "factors saved with U values as float32."),
    }
    with open(os.path.join(args.out_dir, "localmd_result.json"), "w") as fh:
        json.dump(result, fh, indent=2)
    print(json.dumps({k: result[k] for k in ("wall_s", "peak_rss_bytes", "factors_bytes", "rank")}))
    return 0 if ok else 2


if __name__ == "__main__":
    sys.exit(main())
