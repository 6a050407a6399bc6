"""How the workers' CPU grows with generations in flight: bench/inflight.py at several sizes, plotted.

    python bench/inflight_scaling.py [--sizes 500,1000,2000,5000] [--duration 120] [--workers 2]
                                     [--out docs/inflight-cpu]
    python bench/inflight_scaling.py --from run-1000.txt run-5000.txt …   # plot saved runs
        [--compare old-1000.txt old-5000.txt … --labels "batched polls,one RQ job per poll"]

Runs `bench/inflight.py --generations N` once per size, one after another, and reads each run's
last line (`steady_inflight`, `steady_cpu_per_s`, `cpu_ms_per_poll`, `poll_lag_p95_s`, `rss_mb`).
Writes `<out>.svg` (a plot of workers' CPU per second, in % of one core, against generations
held in flight) and, when Chromium is on the machine, `<out>.png` rendered from it. Runs on a
machine with more cores show the same curve further out; the machine's core count is printed
on the plot. Last line: `cpu_per_s_<size>=… cpu_ms_per_poll_<size>=…` for each size.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
W, H, PAD = 640, 400, 60


def run(size: int, duration: float, workers: int) -> dict:
    cmd = [sys.executable, str(ROOT / "bench" / "inflight.py"), "--generations", str(size), "--duration",
           str(duration), "--workers", str(workers)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=duration + 1800)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return {"generations": size, "failed": (done.stderr.strip().splitlines() or ["no output"])[-1][:200]}
    figures = dict(pair.split("=", 1) for pair in lines[-1].split())
    return {"generations": size, **{k: float(v) for k, v in figures.items()}}


def read(path: Path) -> dict:
    """A saved bench/inflight.py output, as `run` returns it."""
    lines = path.read_text().strip().splitlines()
    figures = dict(pair.split("=", 1) for pair in lines[-1].split()) if lines and "=" in lines[-1] else {}
    if "steady_cpu_per_s" not in figures:
        return {"generations": 0, "failed": f"{path}: no headline line"}
    size = next((int(w) for line in lines for w in line.split()[:1] if line.split()[1:2] == ["generations"]
                 and w.isdigit()), int(float(figures["inflight"])))
    return {"generations": size, **{k: float(v) for k, v in figures.items()}}


COLORS = ("#1f77b4", "#d62728")


def svg(series: list[tuple[str, list[dict]]], cores: int) -> str:
    """The plot: one line per (name, points) series, each point labelled with its ms per poll."""
    every = [p for _, points in series for p in points] or [{"steady_inflight": 1, "steady_cpu_per_s": 0.1}]
    x_max = max(p["steady_inflight"] for p in every) * 1.1
    y_max = max(max(100 * p["steady_cpu_per_s"] for p in every) * 1.2, 10)

    def at(x, y):
        return PAD + x / x_max * (W - 2 * PAD), H - PAD - y / y_max * (H - 2 * PAD)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" '
           f'font-size="12"><rect width="100%" height="100%" fill="white"/>',
           f'<text x="{W / 2}" y="24" text-anchor="middle" font-size="15">Worker CPU while holding generations in '
           f'flight ({cores} cores)</text>']
    for i in range(6):  # grid and axes labels
        y = y_max * i / 5
        _, py = at(0, y)
        out.append(f'<line x1="{PAD}" y1="{py:.1f}" x2="{W - PAD}" y2="{py:.1f}" stroke="#ddd"/>'
                   f'<text x="{PAD - 6}" y="{py + 4:.1f}" text-anchor="end">{y:.0f}%</text>')
        x = x_max * i / 5
        px, _ = at(x, 0)
        out.append(f'<text x="{px:.1f}" y="{H - PAD + 18}" text-anchor="middle">{x:.0f}</text>')
    out.append(f'<text x="{W / 2}" y="{H - 14}" text-anchor="middle">generations running upstream (steady state)'
               f'</text><text x="16" y="{H / 2}" transform="rotate(-90 16 {H / 2})" text-anchor="middle">worker '
               f'CPU, % of one core</text>')
    for n, ((name, points), color) in enumerate(zip(series, COLORS)):
        if not points:
            continue
        xy = sorted((p["steady_inflight"], 100 * p["steady_cpu_per_s"], p["cpu_ms_per_poll"]) for p in points)
        path = " ".join(f"{'M' if i == 0 else 'L'}{at(x, y)[0]:.1f},{at(x, y)[1]:.1f}" for i, (x, y, _) in
                        enumerate(xy))
        out.append(f'<path d="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        for x, y, ms in xy:
            px, py = at(x, y)
            out.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="4" fill="{color}"/>')
        x, y, ms = xy[-1]
        px, py = at(x, y)
        out.append(f'<text x="{px - 8:.1f}" y="{py - 10:.1f}" text-anchor="end" fill="{color}">{name}: '
                   f'{ms:.2f} ms/poll</text>')
    out.append("</svg>")
    return "\n".join(out)


def png(svg_path: Path, png_path: Path) -> bool:
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        return False
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp}",
                               f"--screenshot={png_path}", f"--window-size={W},{H}", svg_path.resolve().as_uri()],
                              capture_output=True, timeout=120)
    return done.returncode == 0 and png_path.exists()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="500,1000,2000,5000")
    parser.add_argument("--duration", type=float, default=120.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default="docs/inflight-cpu")
    parser.add_argument("--from", dest="outputs", nargs="+", metavar="FILE",
                        help="plot saved outputs of bench/inflight.py instead of running it")
    parser.add_argument("--compare", nargs="+", metavar="FILE", default=[],
                        help="saved outputs of another version, drawn as a second series")
    parser.add_argument("--labels", default="this version,compared",
                        help="the two series' names, comma-separated")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    runs = [lambda size=size: run(size, args.duration, args.workers) for size in sizes]
    if args.outputs:
        runs = [lambda path=path: read(Path(path)) for path in args.outputs]
    results = []
    for measure in runs:
        result = measure()
        size = result["generations"]
        print(f"{size:>6} generations: " + " ".join(f"{k}={v}" for k, v in result.items() if k != "generations"),
              flush=True)
        results.append(result)
    points = [r for r in results if "failed" not in r]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    other = [r for r in (read(Path(path)) for path in args.compare) if "failed" not in r]
    names = (args.labels.split(",") + ["", ""])[:2]
    out.with_suffix(".svg").write_text(svg([(names[0], points), (names[1], other)], os.cpu_count() or 1))
    rendered = png(out.with_suffix(".svg"), out.with_suffix(".png"))
    print(f"plot: {out.with_suffix('.svg')}" + (f", {out.with_suffix('.png')}" if rendered else " (no Chromium: no PNG)"))
    names, figures = {}, []
    for r in results:  # one key per size; a size run again gets _2, _3 …
        n = names[r["generations"]] = names.get(r["generations"], 0) + 1
        tag = f"{r['generations']}" + (f"_{n}" if n > 1 else "")
        figures.append(f"cpu_per_s_{tag}={r.get('steady_cpu_per_s', float('nan')):.3f} "
                       f"cpu_ms_per_poll_{tag}={r.get('cpu_ms_per_poll', float('nan')):.2f}")
    print(" ".join(figures))
    return 0 if len(points) == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
