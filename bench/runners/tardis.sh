# Tardis, embedded: `tardis` runs ingest, catalog and blobstore in its own process on a local
# repository ($REPO/bench). Peak RSS therefore covers client and services together.
source "$(dirname "${BASH_SOURCE[0]}")/_tardis.bash"
URL="$REPO/$TARDIS_CLIENT"
tool_config() { echo "unencrypted; compression zstd (default, files >= 4 KiB); whole-file objects with rdiff deltas and dedup by hash, no chunking; embedded services, local repository"; }
tool_init() { mkdir -p "$REPO"; }
tool_backup() { tardis_backup "$URL" "$1"; }
tool_restore() { tardis_restore "$URL" "$1" "$2"; }
tool_restore_file() { tardis_restore_file "$URL" "$1" "$2" "$3"; }
