"""`musicssl` with no arguments: open the desktop app on the default library (or `--db`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from musicssl.engine.library import Library
from musicssl.engine.paths import DB_ENV_VAR, default_db_path
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication, QMessageBox

from . import icons
from .instance_lock import InstanceLock, LibraryInUseError
from .settings import APPLICATION, ORGANIZATION, AppSettings


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="musicssl", description="MusicSSL desktop app")
    parser.add_argument(
        "--db",
        help=f"library database file (default: ${DB_ENV_VAR}, the Settings choice, or the user "
        "data folder)",
    )
    parser.add_argument(
        "--no-rescan", action="store_true", help="do not rescan the library folders on start"
    )
    args, _qt_args = parser.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    return args


def main(argv: list[str] | None = None) -> int:
    """Open the main window and run the event loop; returns the exit status."""
    args = parse_args(argv)
    app = QApplication.instance()
    if app is None:
        app = QApplication([sys.argv[0] if sys.argv else "musicssl"])
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APPLICATION)
    app.setApplicationDisplayName("MusicSSL")
    app.setWindowIcon(icons.app_icon())
    settings = AppSettings(QSettings(ORGANIZATION, APPLICATION))
    lock = InstanceLock(default_db_path(args.db or settings.db_path or None))
    try:
        lock.acquire()
    except LibraryInUseError as exc:
        print(f"musicssl: {exc}", file=sys.stderr)
        QMessageBox.warning(None, "MusicSSL is already open", str(exc))
        return 1
    try:
        lib = Library(lock.db_path)
    except Exception as exc:  # noqa: BLE001 - shown to the user, then a clean exit
        lock.release()
        QMessageBox.critical(None, "MusicSSL", f"Cannot open the library database:\n{exc}")
        return 1

    from .window import MainWindow  # after QApplication exists (widgets need it)

    window = MainWindow(lib, settings)
    window.show()
    if not args.no_rescan:
        window.start()
    try:
        status = app.exec()
    finally:
        if window.isVisible():
            window.close()
        lib.close()
        lock.release()
    return int(status)


if __name__ == "__main__":
    sys.exit(main())
