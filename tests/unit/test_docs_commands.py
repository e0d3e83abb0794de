"""Every `trainctl ...` command in the README's and the guides' code blocks (and in the README's
task table) exists as written.

Each command line is parsed against the real click command tree (without running it): the
subcommand is resolved and every --flag is checked against that command's options; flags that
`slurm-script` and `k8s-manifest` pass on to `trainctl train` are checked against `train`'s. An
unknown command or flag fails the test, naming the file and line.

The lines that need no data, device or cluster (`--dry-run`, `config ...`, `slurm-script`,
`k8s-manifest`, `--help`) are also run, in an empty directory, and must exit 0. A line that names
an input file which is not there (a PaddleDetection checkout's config, a user's own file) is
reported as skipped with that reason.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from trainctl.cli import cli

REPO = Path(__file__).resolve().parents[2]
DOCS = sorted([REPO / "README.md", *(p for p in [REPO / "CONTRIBUTING.md"] if p.exists()), *(REPO / "docs").glob("*.md")])

SHELL_STOP = {"|", "||", ">", ">>", "<", "&&", ";", "&", "2>&1", "2>", "1>"}
PLACEHOLDERS = {"...", "…"}


@dataclass
class DocCommand:
    file: str
    line: int
    text: str
    words: list[str]  # after `trainctl`, up to the first shell operator

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


def _code_blocks(text: str):
    """(first line number, lines) of every fenced code block."""
    block, start, fence = None, 0, ""
    for n, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if block is None:
            m = re.match(r"^(`{3,}|~{3,})", stripped)
            if m:
                block, start, fence = [], n + 1, m.group(1)
        elif stripped.startswith(fence) and stripped.strip("`~") == "":
            yield start, block
            block = None
        else:
            block.append(line)


def _logical_lines(start: int, lines: list[str]):
    """Join backslash continuations; yield (line number of the first piece, text)."""
    buf, first = "", None
    for i, line in enumerate(lines):
        if first is None:
            first = start + i
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        yield first, buf + line
        buf, first = "", None
    if first is not None:
        yield first, buf


def _words(text: str) -> list[str] | None:
    """The words after `trainctl` (None if the line is not a trainctl command)."""
    try:
        lex = shlex.shlex(text, posix=True, punctuation_chars="|&;<>")
        lex.whitespace_split = True
        lex.commenters = "#"
        tokens = list(lex)
    except ValueError:
        return None
    while tokens and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", tokens[0]):  # VAR=value trainctl ...
        tokens.pop(0)
    if not tokens or tokens[0] != "trainctl":
        return None
    out = []
    for tok in tokens[1:]:
        if tok in SHELL_STOP or (tok and set(tok) <= set("|&;<>")):
            break
        out.append(tok)
    return out


def doc_commands() -> list[DocCommand]:
    found = []
    for doc in DOCS:
        rel = str(doc.relative_to(REPO))
        for start, lines in _code_blocks(doc.read_text()):
            # a block with `$ ` prompts mixes commands and their output: only prompted lines are commands
            prompted = any(line.lstrip().startswith("$ ") for line in lines)
            for n, text in _logical_lines(start, lines):
                s = text.strip()
                if prompted:
                    if not s.startswith("$ "):
                        continue
                    s = s[2:]
                words = _words(s)
                if words is not None:
                    found.append(DocCommand(rel, n, s, words))
        # the commands of the tables (README's task → command → guide): `trainctl ...` in a table row
        for n, line in enumerate(doc.read_text().splitlines() if rel == "README.md" else [], 1):
            if line.lstrip().startswith("|"):
                for span in re.findall(r"`(trainctl [^`]+)`", line):
                    words = _words(span)
                    if words is not None and len(words) > 1:
                        found.append(DocCommand(rel, n, span, words))
    return found


COMMANDS = doc_commands()


def _train_command() -> click.Command:
    return cli.get_command(click.Context(cli), "train")


def _check_parses(cmd: DocCommand) -> tuple[list[str], click.Command]:
    """Resolve the subcommand chain and parse the options; return (command path, leaf command)."""
    args = ["VALUE" if w in PLACEHOLDERS else w for w in cmd.words]  # `--weights ...`: a value left out on purpose
    path = ["trainctl"]
    try:
        command: click.Command = cli
        name, parent, rest = "trainctl", None, args
        while True:
            ctx = click.Context(command, info_name=name, parent=parent, **command.context_settings)
            if not isinstance(command, click.Group):
                opts, _, _ = command.make_parser(ctx).parse_args(list(rest))  # parses only: no value is converted
                break
            command.parse_args(ctx, list(rest))  # a group's own parse (`runs DIR` means `runs list DIR`)
            largs = [*getattr(ctx, "_protected_args", []), *ctx.args]
            if not largs:
                opts = {}
                break
            sub = command.get_command(ctx, largs[0])
            if sub is None:
                raise click.UsageError(f"No such command '{largs[0]}' under `{' '.join(path)}`")
            path.append(largs[0])
            name, parent, rest, command = largs[0], ctx, largs[1:], sub
        given = opts.get("train_args")
        forwarded = [a for a in given if a != "--"] if isinstance(given, (list, tuple)) else []
        if forwarded:  # slurm-script and k8s-manifest pass these on to `trainctl train`
            train = _train_command()
            train.make_parser(click.Context(train, info_name="train", parent=ctx)).parse_args(forwarded)
    except click.UsageError as exc:
        raise AssertionError(f"{cmd.where}: `{cmd.text}`: {exc.format_message()}") from None
    return path, command


def _runnable(cmd: DocCommand, path: list[str]) -> bool:
    words = cmd.words
    if any(w in PLACEHOLDERS for w in words) or "--apply" in words:
        return False
    if any(w in ("--help", "-h") for w in words):
        return True
    if any(w == "--dry-run" or w.startswith("--dry-run=") for w in words):
        return True
    return len(path) > 1 and path[1] in ("config", "slurm-script", "k8s-manifest")


def _missing_input(words: list[str], cwd: Path) -> str | None:
    """A -c/--hostfile file that is neither bundled nor present: the line cannot run here."""
    from trainctl.config import find_config

    for i, w in enumerate(words[:-1]):
        value = words[i + 1]
        if w in ("-c", "--config"):
            try:
                find_config(value)
            except Exception:
                return f"config {value} is not bundled and not in the directory"
        if w == "--hostfile" and not (cwd / value).exists():
            return f"hostfile {value} is not there"
    return None


def test_docs_have_commands():
    assert len(COMMANDS) >= 100, [c.where for c in COMMANDS]
    assert {c.file for c in COMMANDS} >= {"README.md", "docs/install.md", "docs/custom-data.md"}


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: c.where)
def test_doc_command_exists(cmd):
    _check_parses(cmd)


def _parses_and_runnable(cmd: DocCommand) -> bool:
    try:
        return _runnable(cmd, _check_parses(cmd)[0])
    except AssertionError:
        return False  # test_doc_command_exists reports it


RUNNABLE = [c for c in COMMANDS if _parses_and_runnable(c)]


def test_some_commands_run():
    assert len(RUNNABLE) >= 20


# commands the docs show failing on purpose, with the exit code the docs promise
EXPECTED_EXIT = {
    "trainctl config show -c roadsign.yml -o TrainReader.batch_sise=4": 2,  # docs/configs.md: the did-you-mean error
}
CHECKOUT = REPO.parent / "shared" / "reference" / "paddledetection-src" / "release-2.7.1"
DEVELOP = REPO.parent / "shared" / "reference" / "paddledetection-src" / "develop"
GUIDE_CONFIGS = {  # docs/custom-data.md's configs: its YAML block, and the RT-DETR variant it describes
    "configs/my/ppyoloe_plus_s_mydata.yml": ("ppyoloe/ppyoloe_plus_crn_s_80e_coco.yml", ""),
    "configs/my/rtdetr_r18_mydata.yml": ("rtdetr/rtdetr_r18vd_6x_coco.yml", "trainctl: {ref_gpus: 4}\n"),
}


def _guide_yaml() -> str:
    """The config docs/custom-data.md tells the reader to write (its first YAML block with a _BASE_)."""
    text = (REPO / "docs" / "custom-data.md").read_text()
    for _, lines in _code_blocks(text):
        if lines and lines[0].startswith("_BASE_: ['../ppyoloe/ppyoloe_plus_crn_s_80e_coco.yml']"):
            return "\n".join(lines) + "\n"
    raise AssertionError("docs/custom-data.md: the PP-YOLOE+ config block is gone")


def _voc_to_coco(voc: Path, out: Path) -> None:
    """The sample VOC set as COCO json (train/val image folders, annotations/{train,val}.json)."""
    import json
    import shutil
    import xml.etree.ElementTree as ET

    labels = (voc / "label_list.txt").read_text().split()
    (out / "annotations").mkdir(parents=True)
    for split, listing in (("train", "train.txt"), ("val", "valid.txt")):
        (out / split).mkdir()
        images, anns = [], []
        for i, line in enumerate((voc / listing).read_text().split("\n")):
            if not line.strip():
                continue
            img, xml = line.split()
            root = ET.parse(voc / xml).getroot()
            shutil.copy(voc / img, out / split / Path(img).name)
            images.append({"id": i + 1, "file_name": Path(img).name, "width": int(root.find("size/width").text),
                           "height": int(root.find("size/height").text)})
            for obj in root.findall("object"):
                x1, y1, x2, y2 = (float(obj.find(f"bndbox/{k}").text) for k in ("xmin", "ymin", "xmax", "ymax"))
                anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": labels.index(obj.find("name").text) + 1,
                             "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
        cats = [{"id": k + 1, "name": n} for k, n in enumerate(labels)]
        (out / "annotations" / f"{split}.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))


def _guide_workspace(root: Path, monkeypatch, capsys) -> None:
    """docs/custom-data.md's set-up in ROOT: its configs on the develop checkout's, a COCO copy of the sample."""
    if not DEVELOP.is_dir():
        pytest.skip(f"no PaddleDetection develop checkout at {DEVELOP}")
    yaml = _guide_yaml()
    for name, (base, extra) in GUIDE_CONFIGS.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        body = yaml.replace("'../ppyoloe/ppyoloe_plus_crn_s_80e_coco.yml'", repr(str(DEVELOP / "configs" / base)))
        path.write_text(body + extra)
    code, text = _run(["data", "sample", "--out", str(root / "voc"), "--images", "10"], capsys)
    assert code == 0, text
    _voc_to_coco(root / "voc", root / "dataset" / "mycoco")
    monkeypatch.setenv("TRAINCTL_PPDET", str(DEVELOP))  # as if run from inside the checkout


def test_custom_data_guide_checks_its_dataset(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _guide_workspace(tmp_path, monkeypatch, capsys)
    for name in GUIDE_CONFIGS:
        code, text = _run(["data", "check", "-c", name], capsys)
        assert code == 0 and "[COCO] dataset/mycoco/annotations/train.json" in text and "4 classes" in text, text
    code, text = _run(["train", "-c", "configs/my/rtdetr_r18_mydata.yml", "--gpus", "0,1", "--dry-run"], capsys)
    assert code == 0 and "reference: 4 GPUs" in text and "0.0001 -> 5e-05" in text, text


def _run(words: list[str], capsys) -> tuple[int, str]:
    """trainctl's own entry point (errors become one line and an exit code, as in a shell)."""
    from trainctl import output
    from trainctl.cli import main

    try:
        main(list(words))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        output.set_quiet(False)
    out = capsys.readouterr()
    return code, out.out + out.err


@pytest.mark.parametrize("cmd", RUNNABLE, ids=lambda c: c.where)
def test_doc_command_runs(cmd, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("TRAINCTL_DEBUG", raising=False)
    monkeypatch.delenv("TRAINCTL_PPDET", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "hosts.txt").write_text("node1 slots=4\nubuntu@node2:2222 gpus=0,1,2,3\n")
    if "my.yml" in cmd.words:  # the user's own config: here, roadsign.yml resolved into one file
        code, text = _run(["config", "show", "-c", "roadsign.yml"], capsys)
        assert code == 0, text
        (tmp_path / "my.yml").write_text(text)
    if any(w in GUIDE_CONFIGS for w in cmd.words):
        _guide_workspace(tmp_path, monkeypatch, capsys)
    if any(w.startswith("configs/yolov3/") for w in cmd.words) and CHECKOUT.is_dir():
        monkeypatch.chdir(CHECKOUT)  # a PaddleDetection checkout's config, run from inside the checkout
    reason = _missing_input(cmd.words, Path.cwd())
    if reason:
        pytest.skip(f"{cmd.where}: {reason}")
    code, text = _run(cmd.words, capsys)
    expected = EXPECTED_EXIT.get(cmd.text.split("#")[0].strip(), 0)
    assert code == expected, f"{cmd.where}: `{cmd.text}` exited {code}, not {expected}:\n{text[-2000:]}"


# the parser of this test, on lines as the docs write them
def test_words_and_blocks():
    assert _words("trainctl train -c a.yml --gpus 0,1   # comment") == ["train", "-c", "a.yml", "--gpus", "0,1"]
    assert _words("trainctl k8s-manifest -c x --nodes 2 > job.yaml") == ["k8s-manifest", "-c", "x", "--nodes", "2"]
    assert _words("TRAINCTL_PPDET=/x trainctl doctor | grep ppdet") == ["doctor"]
    assert _words("kubectl apply -f job.yaml") is None
    text = "a\n```bash\n$ trainctl runs\ntrainctl smoke x.yml: output line\n```\n```\ntrainctl train \\\n  --eval\n```\n"
    blocks = list(_code_blocks(text))
    assert blocks[0][0] == 3 and list(_logical_lines(*blocks[1])) == [(7, "trainctl train    --eval")]


def test_unknown_flag_and_command_fail():
    with pytest.raises(AssertionError, match="README.md:1.*--no-such-flag"):
        _check_parses(DocCommand("README.md", 1, "t", ["train", "-c", "roadsign.yml", "--no-such-flag"]))
    with pytest.raises(AssertionError, match="No such command"):
        _check_parses(DocCommand("README.md", 2, "t", ["config", "trace", "-c", "roadsign.yml"]))
    with pytest.raises(AssertionError, match="--no-such-train-flag"):
        _check_parses(DocCommand("README.md", 3, "t", ["slurm-script", "--nodes", "2", "--gpus-per-node", "1", "-c",
                                                       "roadsign.yml", "--", "--no-such-train-flag"]))


def test_eval_line_without_detections_says_so():
    """Found writing docs/custom-data.md: PP-YOLOE+ after 2 iterations detects nothing, and ppdet's COCO
    metric then returns no result; the final line said `COCO mAP  on 2 images`."""
    from trainctl.runner.worker import final_line

    line = final_line({"task": "eval", "metric": "COCO", "results": {}, "images": 2, "weights": "w"})
    assert line == "eval done: COCO mAP - (no result: the model made no detections) on 2 images, weights w"
    line = final_line({"task": "eval", "metric": "VOC", "results": {"bbox": 0.5}, "images": 2, "weights": "w"})
    assert line == "eval done: VOC mAP 50.00% (bbox) on 2 images, weights w"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def test_links_between_docs_resolve():
    """Every relative link in README, CONTRIBUTING and docs/ names a file in the repository, and its #anchor a heading."""
    bad = []
    for doc in DOCS:
        in_code = False
        for n, line in enumerate(doc.read_text().splitlines(), 1):
            if line.strip().startswith("```"):
                in_code = not in_code
            if in_code:
                continue
            for target in re.findall(r"\]\(([^)\s]+)\)", line):
                if re.match(r"^[a-z]+://", target) or target.startswith("mailto:"):
                    continue
                path, _, anchor = target.partition("#")
                dest = (doc.parent / path).resolve() if path else doc
                where = f"{doc.relative_to(REPO)}:{n}: {target}"
                if REPO not in dest.parents and dest != REPO:
                    bad.append(f"{where} (outside the repository)")
                elif not dest.exists():
                    bad.append(f"{where} (no such file)")
                elif anchor and dest.suffix == ".md":
                    headings = {_slug(h) for h in re.findall(r"^#+\s+(.*)$", dest.read_text(), re.M)}
                    if anchor not in headings:
                        bad.append(f"{where} (no such heading)")
    assert not bad, "broken links:\n" + "\n".join(bad)


def _doc_outputs():
    import importlib.util

    spec = importlib.util.spec_from_file_location("doc_outputs", REPO / "scripts" / "doc_outputs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_output_markers_hold_generated_output():
    """Each `<!-- output: CMD -->` block starts with `$ CMD` and holds what scripts/doc_outputs.py wrote."""
    marker = _doc_outputs().MARKER
    found = 0
    for doc in DOCS:
        lines = doc.read_text().splitlines()
        for n, line in enumerate(lines):
            m = marker.match(line)
            if m:
                found += 1
                where = f"{doc.relative_to(REPO)}:{n + 1}"
                assert lines[n + 1].startswith("```") and lines[n + 2] == f"$ {m.group(1)}", where
                assert not lines[n + 3].startswith("```"), f"{where}: empty output: run python scripts/doc_outputs.py"
    assert found >= 2


def test_doc_outputs_shortens_paths_and_realigns_tables(tmp_path):
    import sys

    mod = _doc_outputs()
    rows = [("item", "value", "status"), ("python", f"3.11 ({sys.executable})", "ok"), ("cwd", f"{tmp_path}/x", "ok")]
    widths = [max(len(r[k]) for r in rows) for k in range(3)]
    table = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    text = "\n".join([table[0], "  ".join("-" * w for w in widths), *table[1:], "", f"after {tmp_path}/y"])
    out = mod.normalize(text, tmp_path).splitlines()
    assert out[0].split() == ["item", "value", "status"] and out[1] == "------  -------------  ------"
    assert out[2] == "python  3.11 (python)  ok" and out[3] == "cwd     ./x            ok"
    assert out[-1] == "after ./y"
