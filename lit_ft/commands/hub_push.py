"""Upload an export to the Hugging Face Hub (`lit_ft export --push_to_hub REPO`) with `huggingface_hub`'s public
API: `create_repo` (kept when it exists) and `upload_folder` of the files the export wrote, in one commit. The token
is huggingface_hub's own: `HF_TOKEN`, or the one `hf auth login` saved. Offline, or when the Hub cannot be reached,
the export stays on disk and one line says how to upload it later."""

from __future__ import annotations

from pathlib import Path

from lit_ft.errors import UserError
from lit_ft.owned_dir import MANIFEST, read_manifest


def push_export(out_dir: Path, repo_id: str, private: bool = False) -> str:
    """Upload the export in `out_dir` to model repo `repo_id` (created when missing); returns the commit's URL.

    Args:
        out_dir: A finished export directory.
        repo_id: The Hub repo, `user/name` or `org/name`.
        private: Create the repo private (an existing repo keeps its visibility).
    """
    from huggingface_hub import HfApi, is_offline_mode
    from huggingface_hub.errors import HTTPError

    later = f"the export stays in {out_dir}; upload it later with `hf upload {repo_id} {out_dir}`"
    if is_offline_mode():
        raise UserError(f"cannot push to the Hub repo {repo_id}: huggingface_hub is offline (HF_HUB_OFFLINE=1); "
                        f"{later}")
    api = HfApi()
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        commit = api.upload_folder(repo_id=repo_id, folder_path=out_dir, repo_type="model",
                                   commit_message="Upload model exported by lit_ft",
                                   allow_patterns=export_files(out_dir))
    except (HTTPError, OSError) as err:  # no network, no token, refused (401/403), and the like
        raise UserError(f"could not push to the Hub repo {repo_id} ({type(err).__name__}: {err}); check the "
                        f"network and the token (HF_TOKEN or `hf auth login`); {later}") from err
    return str(commit.commit_url)


def export_files(out_dir: Path) -> list[str]:
    """The files the export wrote (its manifest's list), not files of the user's beside them (`--overwrite`)."""
    listed = read_manifest(out_dir).get("files")
    return [MANIFEST, *(str(f) for f in listed)] if isinstance(listed, list) else ["*"]
