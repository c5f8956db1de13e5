#!/bin/sh
# One-shot contract deployment on the Besu network, once besu1's JSON-RPC is ready.
#
# notary1's signer deploys DeviceRegistry and TelemetryNotary (`qkd-notary init`, which
# attaches instead when notary1's chain.json already names live contracts). notary2 then
# receives the same chain.json (same contracts) and admin token (so an admin request works
# whichever instance the proxy picks), and its own signer is granted the notary and
# operator roles by notary1's (the contracts' admin). Safe to re-run: init attaches, the
# copies are made once, and granting a role an account already holds changes nothing.
set -eu
umask 077

ROOT="${QKD_ROOT:-/var/lib/qkd}"
NOTARY1="$ROOT/notary1"
NOTARY2="$ROOT/notary2"
RPC="${QKD_NOTARY_CHAIN_RPC_URL:?}"
PASSWORD1="${SECRETS_DIR:-/run/secrets}/notary1_keystore_password"

qkd-notary init --data-dir "$NOTARY1" --chain-rpc-url "$RPC" --password-file "$PASSWORD1"

for file in chain.json admin.token; do
    [ -e "$NOTARY2/$file" ] || cp "$NOTARY1/$file" "$NOTARY2/$file"
done
if ! cmp -s "$NOTARY1/chain.json" "$NOTARY2/chain.json"; then
    echo "deploy: notary2's chain.json names other contracts than notary1's; refusing" >&2
    exit 1
fi

signer2="$(qkd-notary keystore address --data-dir "$NOTARY2")"
for role in notary operator; do
    qkd-notary chain grant-role "$role" "$signer2" \
        --data-dir "$NOTARY1" --chain-rpc-url "$RPC" --password-file "$PASSWORD1"
done
echo "deploy: complete"
