# Tardis, embedded, encrypted: as tardis.sh, with a password (AES-256-GCM contents, AES-SIV
# names, keyed addresses, a sealed manifest per set; scrypt n=2^17 at every login). The
# issue's target: at most 10% slower than tardis.sh on the first backup.
source "$(dirname "${BASH_SOURCE[0]}")/_tardis.bash"
URL="$REPO/$TARDIS_CLIENT"
PW="$STATE/password"
unset TARDIS_TEST_KDF
tool_config() { echo "encrypted (password; AES-256-GCM chunks, AES-SIV names, HMAC-SHA256 addresses, manifest per set; scrypt n=2^17 per login); otherwise as tardis"; }
tool_init() { mkdir -p "$REPO"; echo "bench password" >"$PW"; }
tool_backup() { TARDIS_PWFILE="$PW" tardis_backup "$URL" "$1"; }
tool_restore() { TARDIS_PWFILE="$PW" tardis_restore "$URL" "$1" "$2"; }
tool_restore_file() { TARDIS_PWFILE="$PW" tardis_restore_file "$URL" "$1" "$2" "$3"; }
