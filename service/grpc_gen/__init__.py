"""Code generated from proto/gader/v1/gader.proto by grpc_tools (never edited by hand, never committed).

``make`` generates it when the environment is built; ``ensure()`` regenerates it whenever the .proto is
newer than the generated modules (so an installed package works too). The .proto is staged under this
package's path so the generated imports read ``service.grpc_gen.gader.v1`` (a bare ``gader.v1`` would
collide with the ``gader`` package).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTO = HERE.parents[1] / "proto" / "gader" / "v1" / "gader.proto"
GENERATED = HERE / "gader" / "v1"
STAGED = Path("service") / "grpc_gen" / "gader" / "v1" / "gader.proto"


def ensure() -> None:
    target = GENERATED / "gader_pb2_grpc.py"
    if target.is_file() and (not PROTO.is_file() or target.stat().st_mtime >= PROTO.stat().st_mtime):
        return
    from grpc_tools import protoc  # the build tool, not needed once the code exists

    with tempfile.TemporaryDirectory() as staging:
        staged = Path(staging) / STAGED
        staged.parent.mkdir(parents=True)
        shutil.copy(PROTO, staged)
        include = str(Path(protoc.__file__).parent / "_proto")
        code = protoc.main(
            [
                "protoc",
                f"-I{staging}",
                f"-I{include}",
                f"--python_out={HERE.parents[1]}",
                f"--pyi_out={HERE.parents[1]}",
                f"--grpc_python_out={HERE.parents[1]}",
                str(staged),
            ]
        )
        if code != 0:
            raise RuntimeError(f"protoc failed ({code}) on {PROTO}")
    for package in (HERE / "gader", GENERATED):
        (package / "__init__.py").touch()


def modules():
    """(messages, stubs) modules, generating them first if needed."""
    ensure()
    from service.grpc_gen.gader.v1 import gader_pb2, gader_pb2_grpc

    return gader_pb2, gader_pb2_grpc
