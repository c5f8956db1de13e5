/* qkd_seal: seal stdin into a qkd-notary envelope (binary form, or JSON with -j).
 *   qkd_seal [-j] MODE SENDER RECIPIENT SEQUENCE TIMESTAMP_MS KEYS [NONCE]
 * MODE otp or aead; KEYS the QKD keys in header order as UUID:HEX[,UUID:HEX...]; NONCE
 * 24 hex digits (aead only). Exit 0 sealed, 2 bad input (one line on stderr), 1 failure. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/base64.h>
#include <mbedtls/platform_util.h>

#include "qkd_seal.h"

#define MAX_PLAINTEXT (16u << 20) /* the notary's parser refuses larger ciphertexts */

static int fail(int code, const char *msg) { return fprintf(stderr, "qkd_seal: %s\n", msg), code; }

static int hex_nibble(char c) {
    static const char digits[] = "0123456789abcdef";
    const char *p = c ? strchr(digits, tolower((unsigned char)c)) : NULL;
    return p ? (int)(p - digits) : -1;
}

/* Decode the 2n hex digits at s into n bytes. */
static int unhex(const char *s, size_t n, uint8_t *out) {
    for (size_t i = 0; i < n; i++) {
        int hi = hex_nibble(s[2 * i]), lo = hi < 0 ? -1 : hex_nibble(s[2 * i + 1]);
        if (hi < 0 || lo < 0) return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

/* 8-4-4-4-12 hex digits into the 16 raw bytes the header carries. */
static int parse_uuid(const char *s, uint8_t id[16]) {
    char digits[32];
    size_t n = 0;
    for (size_t i = 0; i < 36; i++) {
        int dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (s[i] == '\0' || (dash != (s[i] == '-'))) return -1;
        if (!dash) digits[n++] = s[i];
    }
    return s[36] == ':' ? unhex(digits, 16, id) : -1;
}

static int parse_u64(const char *s, uint64_t *v) {
    char *end;
    if (*s < '0' || *s > '9') return -1;
    errno = 0;
    unsigned long long x = strtoull(s, &end, 10);
    if (errno || *end) return -1;
    *v = (uint64_t)x;
    return 0;
}

/* KEYS: UUID:HEX pairs; the material is decoded into one buffer the keys point into. */
static int parse_keys(char *spec, qkd_key *keys, size_t *count, uint8_t *store, size_t cap) {
    size_t used = 0;
    *count = 0;
    for (char *item = strtok(spec, ","); item; item = strtok(NULL, ",")) {
        size_t hex_len = strlen(item) > 37 ? strlen(item) - 37 : 0;
        if (*count == QKD_MAX_KEYS || hex_len == 0 || hex_len % 2 || used + hex_len / 2 > cap)
            return -1;
        qkd_key *k = &keys[(*count)++];
        if (parse_uuid(item, k->id) || unhex(item + 37, hex_len / 2, store + used)) return -1;
        k->material = store + used;
        k->len = hex_len / 2;
        used += k->len;
    }
    return *count ? 0 : -1;
}

static void put_json_string(const char *s) {
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20) printf("\\u%04x", c);
        else putchar(c);
    }
    putchar('"');
}

/* Prints prefix, then data in base64 as a JSON string. */
static int put_b64(const char *prefix, const uint8_t *data, size_t n) {
    size_t cap = 4 * ((n + 2) / 3) + 1, olen = 0;
    unsigned char *text = calloc(cap, 1); /* mbedTLS writes nothing at all for n == 0 */
    int rc = text && mbedtls_base64_encode(text, cap, &olen, data, n) == 0 ? 0 : -1;
    if (rc == 0) printf("%s\"%s\"", prefix, (char *)text);
    free(text);
    return rc;
}

/* Spec 5: the JSON form, from the same fields and the sealed binary's ct and tag. */
static int put_json(const qkd_header *h, const uint8_t *env, size_t env_len, size_t len) {
    const uint8_t *ct = env + env_len - QKD_TAG_BYTES - len;
    printf("{\"v\":%d,\"mode\":\"%s\",\"sender\":", QKD_ENVELOPE_VERSION,
           h->mode == QKD_MODE_OTP ? "otp" : "aead");
    put_json_string(h->sender);
    printf(",\"recipient\":");
    put_json_string(h->recipient);
    printf(",\"seq\":%llu,\"ts\":%llu,\"key_ids\":[", (unsigned long long)h->sequence,
           (unsigned long long)h->timestamp_ms);
    for (size_t i = 0; i < h->key_count; i++) { /* canonical 8-4-4-4-12 lowercase */
        printf("%s\"", i ? "," : "");
        for (int b = 0; b < 16; b++)
            printf("%s%02x", b == 4 || b == 6 || b == 8 || b == 10 ? "-" : "", h->keys[i].id[b]);
        putchar('"');
    }
    if (put_b64("],\"nonce\":", h->nonce, h->nonce ? QKD_NONCE_BYTES : 0) ||
        put_b64(",\"ct\":", ct, len) || put_b64(",\"tag\":", ct + len, QKD_TAG_BYTES))
        return -1;
    printf("}\n");
    return 0;
}

static uint8_t *read_all(FILE *in, size_t *len) {
    size_t cap = 4096, n = 0;
    uint8_t *buf = malloc(cap), *bigger;
    while (buf) {
        n += fread(buf + n, 1, cap - n, in);
        if (n < cap) break; /* end of input, or an error (checked below) */
        if (cap > MAX_PLAINTEXT || !(bigger = realloc(buf, 2 * cap))) {
            free(buf);
            return NULL;
        }
        buf = bigger;
        cap *= 2;
    }
    if (!buf || ferror(in) || n > MAX_PLAINTEXT) {
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

int main(int argc, char **argv) {
    int json = argc > 1 && strcmp(argv[1], "-j") == 0, rc = 1;
    char **a = argv + 1 + json;
    int n = argc - 1 - json;
    qkd_key keys[QKD_MAX_KEYS];
    uint8_t nonce[QKD_NONCE_BYTES], *store = NULL, *pt = NULL, *env = NULL;
    size_t len = 0, env_len = 0, store_cap;

    if (n != 6 && n != 7)
        return fail(2, "usage: qkd_seal [-j] MODE SENDER RECIPIENT SEQUENCE TIMESTAMP_MS "
                       "UUID:HEX[,UUID:HEX...] [NONCE_HEX]");
    qkd_header h = {.sender = a[1], .recipient = a[2], .keys = keys};
    h.mode = strcmp(a[0], "otp") == 0 ? QKD_MODE_OTP : strcmp(a[0], "aead") == 0 ? QKD_MODE_AEAD : 0;
    if (!h.mode) return fail(2, "MODE must be otp or aead");
    if (parse_u64(a[3], &h.sequence) || parse_u64(a[4], &h.timestamp_ms))
        return fail(2, "SEQUENCE and TIMESTAMP_MS must be unsigned 64-bit integers");
    if ((h.mode == QKD_MODE_AEAD) != (n == 7))
        return fail(2, "aead takes a NONCE_HEX, otp none");
    if (n == 7) {
        if (strlen(a[6]) != 2 * QKD_NONCE_BYTES || unhex(a[6], QKD_NONCE_BYTES, nonce))
            return fail(2, "NONCE_HEX must be 24 hex digits");
        h.nonce = nonce;
    }
    store_cap = strlen(a[5]) / 2 + 1;
#define BAIL(code, msg) do { rc = fail(code, msg); goto done; } while (0)
    if (!(store = malloc(store_cap))) return fail(1, "out of memory");
    if (parse_keys(a[5], keys, &h.key_count, store, store_cap))
        BAIL(2, "KEYS must be UUID:HEX pairs separated by commas (at most 64)");
    if (!(pt = read_all(stdin, &len))) BAIL(2, "cannot read the plaintext from stdin (at most 16 MiB)");
    if (!(env_len = qkd_sealed_size(&h, len)))
        BAIL(2, "SENDER/RECIPIENT: 1-128 characters (255 bytes); key IDs distinct");
    if (!(env = malloc(env_len))) BAIL(1, "out of memory");
    switch (qkd_seal(&h, pt, len, env, env_len, &env_len)) {
    case 0:
        rc = json ? (put_json(&h, env, env_len, len) ? 1 : 0)
                  : (fwrite(env, 1, env_len, stdout) == env_len ? 0 : 1);
        break;
    case QKD_ERR_KEYS:
        rc = fail(2, h.mode == QKD_MODE_OTP ? "otp needs 32 + len(plaintext) key bytes"
                                            : "aead takes exactly one 32-byte key");
        break;
    default:
        rc = fail(1, "sealing failed");
    }
done:
    if (store) mbedtls_platform_zeroize(store, store_cap); /* the key material */
    free(store);
    free(pt);
    free(env);
    return rc == 0 && fflush(stdout) != 0 ? 1 : rc;
}
