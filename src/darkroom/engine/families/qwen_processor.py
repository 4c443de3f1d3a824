"""The processor of the Qwen-VL text encoders (Qwen-Image-Edit, Qwen-Image 2.1), loaded without
torchvision where it must be.

transformers 5 builds these processors with a video processor, which needs torchvision even when
only still images pass through (transformers#43986, diffusers#13140): without it,
``from_pretrained`` fails on an image model. Where torchvision is installed (the usual GPU set-up)
the processor loads as usual. Where it is not, the family builds it from the weights'
``processor/`` tokenizer and image processor alone (the pure-PIL image processor), which is all
an image pipeline calls; videos are never processed.
"""

from __future__ import annotations

import logging
from functools import cache
from pathlib import Path
from typing import Any

log = logging.getLogger("darkroom.diffusers")


def processor_arguments(directory: Path, class_name: str) -> dict[str, Any]:
    """``{"processor": ...}`` for ``from_pretrained`` where transformers cannot load it itself
    (no torchvision); nothing where it can, or where the weights have no processor."""
    from transformers.utils.import_utils import is_torchvision_available

    folder = directory / "processor"
    if is_torchvision_available() or not folder.is_dir():
        return {}
    from transformers import AutoImageProcessor, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    image_processor = AutoImageProcessor.from_pretrained(str(folder))
    template = None
    for name in ("chat_template.jinja", "chat_template.json"):
        if (folder / name).is_file():
            text = (folder / name).read_text()
            template = text if name.endswith(".jinja") else _json_template(text)
            break
    log.info(
        "%s: torchvision is not installed; its %s is built for images only", directory, class_name
    )
    return {"processor": image_only(class_name, image_processor, tokenizer, template)}


def image_only(
    class_name: str, image_processor: Any, tokenizer: Any, chat_template: str | None
) -> Any:
    """A ``class_name`` processor without a video processor."""
    return _image_only_class(class_name)(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=None,
        chat_template=chat_template or getattr(tokenizer, "chat_template", None),
    )


@cache
def _image_only_class(class_name: str) -> Any:
    import transformers

    base = getattr(transformers, class_name)

    class ImageOnly(base):  # type: ignore[misc, valid-type]
        def check_argument_for_proper_class(self, argument_name: str, argument: Any) -> Any:
            if argument_name == "video_processor" and argument is None:
                return None  # the one it would need torchvision to check
            return super().check_argument_for_proper_class(argument_name, argument)

    ImageOnly.__name__ = ImageOnly.__qualname__ = f"{class_name}ImagesOnly"
    return ImageOnly


def _json_template(text: str) -> str | None:
    import json

    value = json.loads(text)
    template = value.get("chat_template") if isinstance(value, dict) else None
    return template if isinstance(template, str) else None
