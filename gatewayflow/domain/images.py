"""Which container images a gateway's runtime may run (GATEWAYFLOW_RUNTIME_IMAGES).

The image comes from `instance.image` in the ApiGateway document, a field the tenant can
write: it is checked against the operator's list before a start begins and again where the
Deployment is built.
"""

from collections.abc import Sequence

from gatewayflow.domain.errors import PermanentError


class ImageNotAllowed(PermanentError):
    """A runtime image outside GATEWAYFLOW_RUNTIME_IMAGES: the start is refused."""


def allows(entry: str, image: str) -> bool:
    """An entry ending in `/` allows every image under it (`registry.example.com/team/`);
    any other entry is a repository and allows itself with any tag or digest
    (`gatewayflow/runtime` allows `gatewayflow/runtime:1.0`, not `gatewayflow/runtime-x`)."""
    if not entry:
        return False
    if entry.endswith("/"):
        return image.startswith(entry) and len(image) > len(entry)
    return image == entry or (image.startswith(entry) and image[len(entry)] in ":@")


def check_runtime_image(image: str, allowed: Sequence[str]) -> None:
    if not any(allows(entry, image) for entry in allowed):
        raise ImageNotAllowed(
            f"runtime image {image!r} is not allowed: GATEWAYFLOW_RUNTIME_IMAGES allows "
            f"{', '.join(allowed) or 'none'}; set instance.image to one of those, then "
            "request a start"
        )
