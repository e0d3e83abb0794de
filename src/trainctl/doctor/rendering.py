"""`trainctl doctor`'s output: the table, the hints and the bug-report block."""

from __future__ import annotations

from typing import Any

from trainctl.doctor.verdict import auto_text, fmt_list, gpu_text, iface_text, port_text


_MARK = {"ok": "ok", "warn": "WARN", "fail": "FAIL", "info": ""}


def render_table(report: dict[str, Any]) -> list[list[str]]:
    """Rows [section, item, value, status] for output.table."""
    rows = []
    last = None
    for item in report["items"]:
        section = item["section"] if item["section"] != last else ""
        last = item["section"]
        rows.append([section, item["name"], item["value"], _MARK[item["status"]]])
    return rows


def hints(report: dict[str, Any]) -> list[str]:
    return [f"{i['name']}: {i['hint']}" for i in report["items"] if i["status"] in ("warn", "fail") and i["hint"]]


def render_bug_report(report: dict[str, Any]) -> str:
    """A block to paste into a bug report (like `accelerate env`)."""
    paddle = report["paddle"]
    pk = report["packages"]
    host = report["host"]
    if paddle["installed"]:
        build = f"CUDA {paddle['cuda']} / cuDNN {paddle['cudnn']}" if paddle["cuda_build"] else "CPU"
        paddle_line = f"{paddle['version']} ({paddle['distribution']}, {build}, commit {paddle.get('commit') or '?'})"
    else:
        paddle_line = "not installed"
    lines = [
        "Copy and paste the text below into your bug report.",
        "",
        f"- trainctl version: {report['trainctl']}",
        f"- Platform: {report['platform']}",
        f"- Python version: {report['python']['version']} ({report['python']['executable']})",
        f"- paddle version: {paddle_line}",
        f"- paddledet version: {pk['paddledet']['version'] or 'not installed'}",
        f"- ppdet used: {(report.get('ppdet') or {}).get('description', '?')}",
        f"- compatibility: {report['compatibility']['verdict']} ({report['compatibility']['reason']})",
        f"- numpy version: {pk['numpy']['version'] or 'not installed'}",
        f"- opencv version: {pk['opencv']['version'] or 'not installed'}",
        f"- libstdc++: {report['libstdcxx']['path'] or '?'} (GLIBCXX up to {report['libstdcxx']['newest_glibcxx'] or '?'})",
        f"- GPUs: {fmt_list([gpu_text(g) for g in host.get('gpus') or []])}",
        f"- CUDA_VISIBLE_DEVICES: {report['cuda_visible_devices'] if report['cuda_visible_devices'] is not None else 'not set'}",
        f"- NCCL: {paddle.get('nccl') or 'none'}",
        f"- network interfaces: {fmt_list([iface_text(i) for i in host.get('interfaces') or []])}",
        f"- RDMA ports: {fmt_list([port_text(p) for p in host.get('ib_ports') or []])}",
        f"- GPUDirect RDMA module: {host.get('gpudirect_module') or 'none'}",
        f"- --net auto: {auto_text(host.get('net_auto'))}",
    ]
    if report.get("check") is not None:
        c = report["check"]
        lines.append(f"- paddle check: {'ok on ' + str(c.get('device')) if c.get('ok') else c.get('error')}")
    problems = [f"{i['name']}: {i['value']}" for i in report["items"] if i["status"] == "fail"]
    lines.append(f"- doctor problems: {'; '.join(problems) if problems else 'none'}")
    return "\n".join(lines)
