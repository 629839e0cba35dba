"""Storage on local folders: key `elena/1_raw/<id>.png` is the file `root/elena/1_raw/<id>.png`,
so the library is exactly the operator's folder layout (1_raw/ 2_cropped/ 3_review/
4_approved/<vault>/ 5_uploaded/<vault>/ rejected/ per creator).

Writes go to a hidden temp file in the destination folder and are renamed into place with
os.replace: a crash never leaves half a file under a real name, and a folder watcher never sees
a partial image. Blocking file I/O runs in a worker thread, off the event loop."""

from __future__ import annotations

import asyncio
import errno
import os
import tempfile
from pathlib import Path

from vaultline.adapters.storage._keys import validate_key, validate_prefix

TEMP_SUFFIX = ".vltmp"


def _current_umask() -> int:
    # mkstemp creates files 0600; published files should get the usual umask-derived mode.
    # Read once at import: os.umask() is a set-and-restore, not safe to call from threads later.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_current_umask()


class LocalStorage:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).expanduser().resolve()

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    # ------------------------------------------------------------------ paths

    def path_for(self, key: str) -> Path:
        """The file a key maps to (it may not exist). Raises ValueError for unsafe keys."""
        return self.root.joinpath(*validate_key(key).split("/"))

    def key_for(self, path: Path | str) -> str:
        """Inverse of path_for, for a file found on disk (e.g. moved by hand into 4_approved/).
        Raises ValueError when the path is not inside the root or is not a valid key."""
        p = Path(path).expanduser()
        p = p if p.is_absolute() else Path.cwd() / p
        # Resolve the folder but not the file itself, so a symlinked file keeps its own name.
        p = p.parent.resolve() / p.name
        try:
            rel = p.relative_to(self.root)
        except ValueError:
            raise ValueError(f"{path} is not inside the storage root {self.root}") from None
        return validate_key(rel.as_posix())

    # ------------------------------------------------------------------ Storage

    async def put(self, key: str, data: bytes, content_type: str | None = None) -> None:
        path = self.path_for(key)
        await asyncio.to_thread(self._write_atomic, path, bytes(data))

    async def get(self, key: str) -> bytes:
        path = self.path_for(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise KeyError(key) from None

    async def exists(self, key: str) -> bool:
        path = self.path_for(key)
        return await asyncio.to_thread(path.is_file)

    async def delete(self, key: str) -> None:
        path = self.path_for(key)

        def _unlink() -> None:
            try:
                path.unlink()
            except (FileNotFoundError, NotADirectoryError):
                pass

        await asyncio.to_thread(_unlink)

    async def move(self, src: str, dst: str) -> None:
        s, d = self.path_for(src), self.path_for(dst)
        if s == d:
            if not await self.exists(src):
                raise KeyError(src)
            return
        try:
            await asyncio.to_thread(self._move, s, d)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as e:
            # Only a missing source is a KeyError; dst folders are created by _move.
            if not s.is_file():
                raise KeyError(src) from None
            raise e

    async def list(self, prefix: str = "") -> list[str]:
        prefix = validate_prefix(prefix)
        return await asyncio.to_thread(self._list, prefix)

    # ------------------------------------------------------------------ blocking helpers

    @staticmethod
    def _write_atomic(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fchmod(f.fileno(), _FILE_MODE)
                # Data on disk before the rename: after a power loss the name never points at
                # an empty or partial file.
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        _fsync_dir(path.parent)

    def _move(self, s: Path, d: Path) -> None:
        if not s.is_file():
            raise FileNotFoundError(errno.ENOENT, "no such file", str(s))
        d.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(s, d)
        except OSError as e:
            if e.errno != errno.EXDEV:
                raise
            # A sub-folder mounted from another filesystem: copy atomically, then delete.
            self._write_atomic(d, s.read_bytes())
            s.unlink()
        _fsync_dir(d.parent)
        if s.parent != d.parent:
            _fsync_dir(s.parent)

    def _list(self, prefix: str) -> list[str]:
        # Walk only the deepest folder the prefix names, then filter by the string prefix
        # (S3 semantics: "elena/1_r" matches "elena/1_raw/a.png").
        base_rel = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        base = self.root.joinpath(*base_rel.split("/")) if base_rel else self.root
        if not base.is_dir():
            return []
        keys: list[str] = []
        for dirpath, dirnames, filenames in os.walk(base):
            # Hidden folders/files are never keys (temp files, .DS_Store, .thumbnails).
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            rel_dir = Path(dirpath).relative_to(self.root).as_posix()
            for name in filenames:
                if name.startswith("."):
                    continue
                key = name if rel_dir == "." else f"{rel_dir}/{name}"
                if key.startswith(prefix):
                    keys.append(key)
        keys.sort()
        return keys


def _fsync_dir(path: Path) -> None:
    # Makes the rename itself durable. Not supported everywhere (some network filesystems).
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
