"""``modelport cache list | clear``: the packages fetched from storage and MLflow URIs."""

from __future__ import annotations

import click

from modelport.cli._io import emit_json, print_table


@click.group()
def cache() -> None:
    """List or clear the package cache ($MODELPORT_HOME/cache, at most $MODELPORT_CACHE_SIZE).

    Packages named by a storage URI (s3://, gs://, az://, webhdfs:// …) or an MLflow URI
    (models:/NAME@ALIAS …) are fetched once, verified, and kept here while the object's ETag or
    the registry's version stays the same; the least recently used go first.
    """


@cache.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the entries as JSON.")
def list_cache(as_json: bool) -> None:
    """List the cached packages, most recently used first."""
    from modelport.model_format.limits import human_bytes
    from modelport.model_format.remote.cache import PackageCache

    store = PackageCache()
    entries = store.entries()
    if as_json:
        emit_json([e.to_dict() for e in entries])
        return
    if not entries:
        click.echo(f"The package cache ({store.root}) is empty.")
        return
    print_table(
        [
            [
                e.source,
                e.metadata.get("mlflow.version", "-"),
                e.digest[:19],
                human_bytes(e.size),
                e.to_dict()["last_used"][:19],
            ]
            for e in entries
        ],
        ["SOURCE", "VERSION", "PACKAGE", "SIZE", "LAST USED"],
    )


@cache.command("clear")
@click.option("--json", "as_json", is_flag=True, help="Print what was removed as JSON.")
def clear_cache(as_json: bool) -> None:
    """Remove every cached package (the next use fetches it again)."""
    from modelport.model_format.limits import human_bytes
    from modelport.model_format.remote.cache import PackageCache

    store = PackageCache()
    count, size = store.clear()
    if as_json:
        emit_json({"removed": count, "bytes": size, "path": str(store.root)})
        return
    click.echo(f"Removed {count} package(s), {human_bytes(size)}, from {store.root}.")
