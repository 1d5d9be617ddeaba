"""Create (or update) the Hugging Face Space that runs the app, and upload it.

    python space_config/deploy.py OWNER/unmask-hf --dry-run                # list what would be uploaded
    python space_config/deploy.py OWNER/unmask-hf                          # the weights embedded in unmask_hf/
    python space_config/deploy.py OWNER/unmask-hf --model OWNER/weights --revision <sha>   # these Hub weights

Log in first (`hf auth login`, or HF_TOKEN, or --token). The Space gets app.py, unmask_hf/ (with its embedded weights
and the MTCNN licence), examples/*.jpg, space_config/requirements.txt as requirements.txt and space_config/README.md
as README.md. Each deploy replaces the Space's files with exactly these. `--model` / `--revision` set the Space
variables UNMASK_MODEL / UNMASK_REVISION, which app.py reads; delete them in the Space settings to go back to the
embedded weights. The Space serves only its own model (UNMASK_LOCK_MODEL=1) unless `--model-box` lets visitors
load other Hub models.
"""

import argparse
import shutil
import tempfile
from pathlib import Path

from huggingface_hub import HfApi, SpaceCard

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent


def space_files(root: Path = ROOT) -> dict[str, Path]:
    """Every file of the Space: its path in the Space → the local file."""
    package = sorted(p for p in (root / "unmask_hf").rglob("*")
                     if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")
    return {"README.md": HERE / "README.md", "requirements.txt": HERE / "requirements.txt", "app.py": root / "app.py",
            **{p.relative_to(root).as_posix(): p for p in package},
            **{f"examples/{p.name}": p for p in sorted((root / "examples").glob("*.jpg"))}}


def stage(files: dict[str, Path], folder: Path, model: str | None) -> None:
    """Copy the files into `folder` as the Space lays them out; the README lists `model` in its metadata."""
    for name, path in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, folder / name)
    if model:
        card = SpaceCard.load(folder / "README.md")
        card.data.models = [model]
        card.save(folder / "README.md")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Deploy the unmask-hf app as a Hugging Face Space.")
    parser.add_argument("space_id", help="OWNER/NAME of the Space (created if it does not exist)")
    parser.add_argument("--model", default=None, help="Hub id of the weights the Space loads (default: embedded)")
    parser.add_argument("--revision", default=None, help="with --model: the commit sha (or branch, tag) to pin")
    parser.add_argument("--model-box", action="store_true",
                        help="let visitors load other Hub models (default: the Space serves only its own)")
    parser.add_argument("--private", action="store_true", help="create the Space as private")
    parser.add_argument("--token", default=None, help="Hugging Face token (default: the logged-in one)")
    parser.add_argument("--dry-run", action="store_true", help="only list the files that would be uploaded")
    args = parser.parse_args(argv)
    if args.revision and not args.model:
        parser.error("--revision pins a Hub model: give --model OWNER/weights too")

    files = space_files()
    if args.dry_run:
        for name, path in files.items():
            print(f"{path.stat().st_size / 1e6:8.2f} MB  {name}")
        print(f"{len(files)} files, {sum(p.stat().st_size for p in files.values()) / 1e6:.1f} MB for the Space "
              f"{args.space_id}" + (f" (UNMASK_MODEL={args.model})" if args.model else " (embedded weights)"))
        return 0
    api = HfApi(token=args.token)
    url = api.create_repo(args.space_id, repo_type="space", space_sdk="gradio", private=args.private, exist_ok=True)
    if args.model:
        api.add_space_variable(args.space_id, "UNMASK_MODEL", args.model, description="Hub weights app.py loads")
        api.add_space_variable(args.space_id, "UNMASK_REVISION", args.revision or "main",
                               description="revision of UNMASK_MODEL app.py loads")
    api.add_space_variable(args.space_id, "UNMASK_LOCK_MODEL", "0" if args.model_box else "1",
                           description="1: visitors cannot load other models")
    with tempfile.TemporaryDirectory() as tmp:
        stage(files, Path(tmp), args.model)
        # delete_patterns="*": files of earlier deploys that are gone here are removed (.gitattributes is kept).
        commit = api.upload_folder(repo_id=args.space_id, repo_type="space", folder_path=tmp, delete_patterns="*",
                                   commit_message="Deploy the unmask-hf app")
    print(f"Uploaded {len(files)} files ({commit}); the Space builds at {url}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
