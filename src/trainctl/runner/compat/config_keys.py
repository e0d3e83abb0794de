"""Config keys a loaded ppdet does not accept (a newer tree's config on an older ppdet)."""

from __future__ import annotations


def drop_unsupported_nms_args(cfg) -> list[str]:
    """PaddleDetection 2.7 configs (yolov3 `_base_/yolov3_mobilenet_v1.yml` and 4 others) give
    MultiClassNMS `cpu: True`; a ppdet whose MultiClassNMS has no such parameter (paddledet 2.6.0)
    fails in create() with "unexpected keyword argument 'cpu'". Keyed on the class's own signature:
    keys it does not accept are dropped (and returned, for a log line); a ppdet that has them keeps them."""
    import inspect

    from ppdet.modeling import layers

    accepted = set(inspect.signature(layers.MultiClassNMS.__init__).parameters) | {"name"}
    dropped: list[str] = []

    def walk(node, path: str) -> None:
        if isinstance(node, dict):
            if node.get("name") == "MultiClassNMS" or path.endswith("MultiClassNMS"):
                for key in [k for k in node if k not in accepted]:
                    del node[key]
                    dropped.append(f"{path}.{key}")
            for key, value in list(node.items()):
                walk(value, f"{path}.{key}" if path else str(key))

    walk(cfg, "")
    return dropped
