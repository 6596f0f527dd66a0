"""Which input ``abacus cost`` costs a network for, when ``--input-shape`` does not say.

The cost of a convolutional network scales with its input's size, so a silent guess misleads:
the shape comes from ``--data NAME`` (the registered data set's module knows its input shape
and class count without loading anything), else the default data set's (digits, 1x8x8) with a
note saying it was assumed.
"""

from __future__ import annotations

DEFAULT_DATA = "digits"


def input_from_data(data: str | None, num_classes: int | None) -> tuple[tuple[int, ...], int, str | None]:
    """``(input_shape, num_classes, note)``; the note is ``None`` when nothing was assumed.
    A data set that cannot be built from its name alone raises ``ValueError`` (one line)."""
    import evaluators

    name = data or DEFAULT_DATA
    try:
        dm = evaluators.get_datamodule(name)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"--data: expected a data set buildable from its name ({', '.join(evaluators.list_datasets())}), "
                         f"found {name!r} ({exc}); pass --input-shape C,H,W instead") from None
    shape = tuple(int(x) for x in dm.input_shape)
    classes = int(num_classes) if num_classes is not None else int(dm.num_classes)
    note = None
    if data is None:
        note = (f"note: costed for input shape {','.join(map(str, shape))} and {classes} classes (assumed: the default data set "
                f"{DEFAULT_DATA}); pass --input-shape C,H,W or --data NAME")
    return shape, classes, note
