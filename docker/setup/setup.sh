#!/bin/sh
# One-shot set-up of everything the deployment must not commit or bake into an image:
# the KME/SAE PKI, the QKD link's pre-shared authentication key, the two notary signers'
# keystores, the PostgreSQL password file of each notary, and the Besu QBFT network
# (validator keys, genesis with the signers allowlisted and funded). Runs with no network
# (compose: network_mode none), as the image's unprivileged user, into named volumes.
#
# Idempotent: every step records completion in /var/lib/qkd/setup and is skipped on the
# next `docker compose up`, so keys are generated once and never overwritten.
#
# Inputs (environment of the compose `setup` service):
#   DEVICE_SAES    space-separated SAE IDs to issue device certificates for
#   BESU_NODES     space-separated P2P addresses (IP[:PORT]) of the four validators
#   CHAIN_ID, BLOCK_PERIOD_S, REQUEST_TIMEOUT_S   QBFT genesis parameters
#   QKD_ROOT, SECRETS_DIR, QBFT_NETWORK   where volumes, secrets and the genesis generator
#                  are (defaults: the image's paths; tests/test_deployment.py moves them)
set -eu
umask 077

ROOT="${QKD_ROOT:-/var/lib/qkd}"
SECRETS="${SECRETS_DIR:-/run/secrets}"
QBFT_NETWORK="${QBFT_NETWORK:-$(dirname "$0")/qbft_network.py}"
STATE="$ROOT/setup"
PKI="$STATE/pki"
KME_A="$ROOT/kme-a"
KME_B="$ROOT/kme-b"
NOTARY1="$ROOT/notary1"
NOTARY2="$ROOT/notary2"

mkdir -p "$STATE" "$KME_A" "$KME_B" "$NOTARY1" "$NOTARY2"

done_() { [ -e "$STATE/$1.done" ]; }
mark() { : >"$STATE/$1.done"; echo "setup: $1 done"; }

# 1. PKI. One CA (its key stays in the setup volume); each KME's server certificate names
#    only its own host, so a KME key cannot impersonate the other KME.
if ! done_ pki; then
    set -- --sae notary
    for sae in ${DEVICE_SAES:?}; do set -- "$@" --sae "$sae"; done
    # --host names only the KME server certificates of the same call.
    qkd-kme certs --out "$PKI" --kme kme-a --host kme-a --host localhost --host 127.0.0.1 "$@"
    qkd-kme certs --out "$PKI" --kme kme-b --host kme-b
    mark pki
fi

# 2. Each service gets only its own private keys plus the CA certificate.
copy_pki() {
    dest="$1/pki"
    shift
    mkdir -p "$dest"
    for name in ca.crt "$@"; do cp "$PKI/$name" "$dest/$name"; done
}
if ! done_ service-pki; then
    copy_pki "$KME_A" kme-kme-a.crt kme-kme-a.key kme-kme-a-client.crt kme-kme-a-client.key
    copy_pki "$KME_B" kme-kme-b.crt kme-kme-b.key kme-kme-b-client.crt kme-kme-b-client.key
    copy_pki "$NOTARY1" sae-notary.crt sae-notary.key
    copy_pki "$NOTARY2" sae-notary.crt sae-notary.key
    mark service-pki
fi

# 3. The link's pre-shared Wegman-Carter key: the same file at both link ends.
if ! done_ link-auth; then
    qkd-kme auth-key --out "$STATE/link-auth.key"
    cp "$STATE/link-auth.key" "$KME_A/link-auth.key"
    cp "$STATE/link-auth.key" "$KME_B/link-auth.key"
    mark link-auth
fi

# 4. The notary signers (scrypt keystores; each instance has its own key, so the two
#    instances never race for nonces of one account).
for n in 1 2; do
    if ! done_ "keystore-$n"; then
        # Prints "ADDRESS PATH"; the address (public) is kept for the allowlist below.
        created="$(qkd-notary keystore new --data-dir "$ROOT/notary$n" \
            --password-file "$SECRETS/notary${n}_keystore_password")"
        printf '%s\n' "${created%% *}" >"$STATE/signer-$n.address"
        mark "keystore-$n"
    fi
done

# 5. libpq password files for the shared PostgreSQL (PGPASSFILE), 0600 as libpq demands;
#    ':' and '\' in the password are escaped per the .pgpass format.
if ! done_ pgpass; then
    password="$(sed -e 's/[\\:]/\\&/g' "$SECRETS/postgres_password")"
    for dir in "$NOTARY1" "$NOTARY2"; do
        printf 'postgres:5432:notary:notary:%s\n' "$password" >"$dir/pgpass"
    done
    mark pgpass
fi

# 6. The Besu QBFT network: only the notary signers may send transactions.
if ! done_ besu; then
    set --
    for node in ${BESU_NODES:?}; do set -- "$@" --node "$node"; done
    for n in 1 2; do set -- "$@" --allow-account "$(cat "$STATE/signer-$n.address")"; done
    python "$QBFT_NETWORK" --out "$ROOT/besu" \
        --chain-id "${CHAIN_ID:?}" --block-period "${BLOCK_PERIOD_S:?}" \
        --request-timeout "${REQUEST_TIMEOUT_S:?}" "$@" >"$STATE/besu-network.json"
    cat "$STATE/besu-network.json"
    mark besu
fi

echo "setup: complete"
