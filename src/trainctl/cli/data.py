"""`trainctl data`: make the sample dataset and check datasets."""

from __future__ import annotations

import json
import sys
from collections import defaultdict

import click

from trainctl import output


@click.group("data")
def data() -> None:
    """Make the built-in sample dataset and check a config's datasets.

    \b
    Examples:
      trainctl data sample --out dataset/roadsign_voc
      trainctl data check -c roadsign.yml
    """


@data.command("sample")
@click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False),
              help="Directory to write the dataset into [default: dataset/roadsign_voc, or dataset/coco with --format coco].")
@click.option("--format", "fmt", type=click.Choice(["voc", "coco"]), default="voc", show_default=True,
              help="voc: PaddleDetection's roadsign_voc layout; coco: its COCO layout (train2017/, val2017/, "
                   "annotations/instances_{train,val}2017.json), read by its COCO configs with num_classes: 4.")
@click.option("--images", default=40, show_default=True, type=click.IntRange(min=2), help="Number of images.")
@click.option("--seed", default=0, show_default=True, type=int, help="Random seed (same seed, same bytes).")
@click.option("--sign-size", default=None, metavar="MIN,MAX",
              help="Smallest and largest sign side, as fractions of the image's shorter side (default 1/8 to 1/3).")
@click.option("--max-signs", default=3, show_default=True, type=click.IntRange(min=1), help="Signs per image: 1 to N.")
def sample(out_dir: str | None, fmt: str, images: int, seed: int, sign_size: str | None, max_signs: int) -> None:
    """Write a small synthetic road-sign dataset in VOC or COCO layout (offline, no paddle).

    \b
    Examples:
      trainctl data sample                              # dataset/roadsign_voc, 40 images
      trainctl data sample --out /tmp/signs --images 12 --seed 3
      trainctl data sample --images 200 --sign-size 0.35,0.7 --max-signs 1   # the demo's set (scripts/demo.sh)
      trainctl data sample --format coco                # dataset/coco, for PaddleDetection's COCO configs
    """
    from trainctl.data.sample import write_coco_sample, write_sample_dataset
    from trainctl.errors import UserError
    from trainctl.fsutil import ensure_writable_dir

    try:
        low, high = (float(v) for v in sign_size.split(",")) if sign_size else (1 / 8, 1 / 3)
    except ValueError:
        raise UserError(f"--sign-size {sign_size!r} is not MIN,MAX", hint="e.g. --sign-size 0.35,0.7") from None
    if not 0 < low <= high <= 0.9:  # larger signs do not fit beside their pole
        raise UserError(f"--sign-size {sign_size}: need 0 < MIN <= MAX <= 0.9", hint="e.g. --sign-size 0.35,0.7")
    out_dir = out_dir or ("dataset/coco" if fmt == "coco" else "dataset/roadsign_voc")
    ensure_writable_dir(out_dir, "--out")
    write = write_coco_sample if fmt == "coco" else write_sample_dataset
    summary = write(out_dir, images=images, seed=seed, sign_size=(low, high), max_signs=max_signs)
    output.echo(f"wrote {summary.images} images ({summary.train} train, {summary.valid} valid, "
                f"{summary.objects} boxes) to {summary.out_dir}")


MAX_SHOWN_PER_CODE = 10


@data.command("check")
@click.option("-c", "--config", "config", required=True, help="Config file or bundled config name.")
@click.option("-o", "--override", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config value.")
@click.option("--max-images", type=click.IntRange(min=1), default=None, help="Check at most N images per dataset.")
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON.")
def check(config: str, overrides: tuple[str, ...], max_images: int | None, as_json: bool) -> None:
    """Check a config's train and eval datasets (VOC or COCO) before training.

    Reports missing files, unreadable or truncated images, empty annotations,
    labels not in the label list, boxes outside the image or of zero area,
    duplicate entries, and a num_classes that differs from the dataset's classes,
    with a class histogram. Relative paths are relative to
    the current directory, as in PaddleDetection.

    Exit codes: 0 no errors (warnings allowed), 1 the dataset has errors,
    2 bad input (config not found, bad -o).

    \b
    Examples:
      trainctl data check -c roadsign.yml
      trainctl data check -c my.yml -o TrainDataset.dataset_dir=/data/voc --max-images 200
    """
    from trainctl.config import resolve
    from trainctl.data.check import check_config, histogram_rows, summary_line

    rc = resolve(config, list(overrides))
    report = check_config(rc, max_images=max_images)
    if as_json:
        output.echo(json.dumps(report.to_dict(), indent=2))
    else:
        if not report.datasets:
            output.warn("the config has no TrainDataset or EvalDataset")
        for ds in report.datasets:
            output.echo(summary_line(ds))
            shown: dict[str, int] = defaultdict(int)
            for f in ds.findings:
                shown[f.code] += 1
                if shown[f.code] <= MAX_SHOWN_PER_CODE:
                    where = f" [{f.where}]" if f.where else ""
                    output.echo(f"  {f.severity}: {f.code}: {f.message}{where}")
            for code, count in shown.items():
                if count > MAX_SHOWN_PER_CODE:
                    output.echo(f"  ... {count - MAX_SHOWN_PER_CODE} more {code} (use --json for all)")
            if ds.histogram:
                table = output.table(histogram_rows(ds), headers=["class", "boxes", "share"])
                output.echo("\n".join("  " + line for line in table.splitlines()))
    if report.errors:
        output.error(f"data check: {report.errors} errors, {report.warnings} warnings")
        sys.exit(1)
    output.info(f"data check: ok ({report.warnings} warnings)")
