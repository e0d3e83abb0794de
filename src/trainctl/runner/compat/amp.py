"""Mixed precision: what ppdet does not pass to paddle.amp (master_grad on paddle 3, bfloat16)."""

from __future__ import annotations

import contextlib


@contextlib.contextmanager
def amp_settings(master_grad: bool = False, dtype: str | None = None):
    """Inside this block paddle.amp.decorate and paddle.amp.auto_cast get what ppdet does not pass.

    master_grad: paddledet 2.6.0 never passes it to paddle.amp.decorate, and develop passes it only when
    paddle.__version__[:3] is "2.5" or "0.0" (a develop build), so on paddle 3.x it is dropped; it is
    added here only to a decorate call that lacks it (where ppdet passes it, nothing changes).
    dtype: ppdet has no dtype key and always casts to float16; "bfloat16" is added to both calls.
    With neither case the block changes nothing."""
    import paddle

    add_dtype = dtype if dtype and dtype != "float16" else None
    if not master_grad and not add_dtype:
        yield
        return
    original_decorate, original_auto_cast = paddle.amp.decorate, paddle.amp.auto_cast

    def decorate(*args, **kwargs):
        if master_grad and kwargs.get("level", "O1") == "O2" and "master_grad" not in kwargs:
            kwargs["master_grad"] = True
            from trainctl import output

            output.echo("[trainctl worker] master_grad passed to paddle.amp.decorate (this ppdet drops it on "
                        f"paddle {paddle.__version__})", err=True)
        if add_dtype:
            kwargs.setdefault("dtype", add_dtype)
        return original_decorate(*args, **kwargs)

    def auto_cast(*args, **kwargs):
        if add_dtype:
            kwargs.setdefault("dtype", add_dtype)
        return original_auto_cast(*args, **kwargs)

    paddle.amp.decorate, paddle.amp.auto_cast = decorate, auto_cast
    try:
        yield
    finally:
        paddle.amp.decorate, paddle.amp.auto_cast = original_decorate, original_auto_cast
