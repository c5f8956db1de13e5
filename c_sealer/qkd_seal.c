/* qkd_seal.c: the envelope of docs/envelope-spec.md, sealed with mbedTLS. */
#include "qkd_seal.h"

#include <string.h>

#include <mbedtls/gcm.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/poly1305.h>

static const uint8_t MAGIC[4] = {'Q', 'K', 'D', 'E'};

static int valid_id(const char *s) { /* spec 2: 1-128 characters in 1-255 UTF-8 bytes */
    size_t bytes = 0, chars = 0;
    for (; s && s[bytes]; bytes++) chars += ((unsigned char)s[bytes] & 0xC0) != 0x80;
    return chars >= 1 && chars <= QKD_MAX_ID_CHARS && bytes <= QKD_MAX_ID_BYTES;
}

static int valid_header(const qkd_header *h) {
    if (!h || (h->mode != QKD_MODE_OTP && h->mode != QKD_MODE_AEAD)) return 0;
    if (!valid_id(h->sender) || !valid_id(h->recipient)) return 0;
    if (!h->keys || h->key_count < 1 || h->key_count > QKD_MAX_KEYS) return 0;
    if ((h->mode == QKD_MODE_AEAD) != (h->nonce != NULL)) return 0;
    for (size_t i = 0; i < h->key_count; i++) /* spec 2: key IDs are distinct */
        for (size_t j = i + 1; j < h->key_count; j++)
            if (memcmp(h->keys[i].id, h->keys[j].id, 16) == 0) return 0;
    return 1;
}

size_t qkd_keys_needed(qkd_mode mode, size_t len) {
    return mode == QKD_MODE_OTP ? QKD_MAC_KEY_BYTES + len : QKD_AEAD_KEY_BYTES;
}

static size_t header_size(const qkd_header *h) {
    size_t nonce = h->mode == QKD_MODE_AEAD ? QKD_NONCE_BYTES : 0;
    return 4 + 1 + 1 + 1 + strlen(h->sender) + 1 + strlen(h->recipient) + 8 + 8 + 1 +
           16 * h->key_count + 4 + nonce;
}

size_t qkd_sealed_size(const qkd_header *h, size_t len) {
    if (!valid_header(h) || len > 0xFFFFFFFFu) return 0;
    return header_size(h) + 4 + len + QKD_TAG_BYTES;
}

static uint8_t *put_be(uint8_t *p, uint64_t v, int bytes) { /* big-endian */
    for (int i = bytes - 1; i >= 0; i--, v >>= 8) p[i] = (uint8_t)v;
    return p + bytes;
}

static uint8_t *put_str(uint8_t *p, const char *s) { /* u8 length, then the bytes */
    size_t n = strlen(s);
    *p = (uint8_t)n;
    return (uint8_t *)memcpy(p + 1, s, n) + n;
}

/* Spec 3: the canonical header, which is also the authenticated data. */
static uint8_t *put_header(uint8_t *p, const qkd_header *h) {
    size_t i, nonce = h->mode == QKD_MODE_AEAD ? QKD_NONCE_BYTES : 0;
    memcpy(p, MAGIC, 4); p += 4;
    *p++ = QKD_ENVELOPE_VERSION;
    *p++ = (uint8_t)h->mode;
    p = put_str(p, h->sender);
    p = put_str(p, h->recipient);
    p = put_be(p, h->sequence, 8);
    p = put_be(p, h->timestamp_ms, 8);
    *p++ = (uint8_t)h->key_count;
    for (i = 0; i < h->key_count; i++, p += 16) memcpy(p, h->keys[i].id, 16);
    p = put_be(p, nonce, 4);
    if (nonce) memcpy(p, h->nonce, nonce);
    return p + nonce;
}

/*
 * Spec 4.1: the material of the keys in header order is one stream; bytes [0, 32) are the
 * Poly1305 key (r || s), the next len bytes the pad, the rest discarded.
 */
static int key_stream(const qkd_header *h, size_t offset, uint8_t *dst, size_t n) {
    size_t i, start = 0;
    for (i = 0; i < h->key_count && n > 0; i++) {
        const qkd_key *k = &h->keys[i];
        if (offset < start + k->len) {
            size_t from = offset - start, take = k->len - from;
            if (take > n) take = n;
            memcpy(dst, k->material + from, take);
            dst += take; offset += take; n -= take;
        }
        start += k->len;
    }
    return n == 0 ? 0 : QKD_ERR_KEYS;
}

static int seal_otp(const qkd_header *h, const uint8_t *pt, size_t len, uint8_t *ct,
                    const uint8_t *aad, uint8_t *tag) {
    uint8_t mac_key[QKD_MAC_KEY_BYTES], pad[64];
    size_t done = 0;
    int rc;
    if ((rc = key_stream(h, 0, mac_key, sizeof mac_key)) != 0) goto out;
    while (done < len) { /* the pad, chunk by chunk, so no buffer grows with the message */
        size_t n = len - done < sizeof pad ? len - done : sizeof pad;
        if ((rc = key_stream(h, QKD_MAC_KEY_BYTES + done, pad, n)) != 0) goto out;
        for (size_t i = 0; i < n; i++) ct[done + i] = pt[done + i] ^ pad[i];
        done += n;
    }
    /* Spec 4.1: tag = Poly1305(mac_key, header || ciphertext); the ciphertext's length
     * field between them is not authenticated data. */
    mbedtls_poly1305_context ctx;
    mbedtls_poly1305_init(&ctx);
    if (mbedtls_poly1305_starts(&ctx, mac_key) || mbedtls_poly1305_update(&ctx, aad, header_size(h)) ||
        mbedtls_poly1305_update(&ctx, ct, len) || mbedtls_poly1305_finish(&ctx, tag))
        rc = QKD_ERR_CRYPTO;
    mbedtls_poly1305_free(&ctx);
out:
    mbedtls_platform_zeroize(mac_key, sizeof mac_key);
    mbedtls_platform_zeroize(pad, sizeof pad);
    return rc;
}

static int seal_aead(const qkd_header *h, const uint8_t *pt, size_t len, uint8_t *ct,
                     const uint8_t *aad, uint8_t *tag) {
    mbedtls_gcm_context gcm;
    int rc = 0;
    if (h->key_count != 1 || h->keys[0].len != QKD_AEAD_KEY_BYTES) return QKD_ERR_KEYS;
    mbedtls_gcm_init(&gcm);
    if (mbedtls_gcm_setkey(&gcm, MBEDTLS_CIPHER_ID_AES, h->keys[0].material, 256) != 0 ||
        mbedtls_gcm_crypt_and_tag(&gcm, MBEDTLS_GCM_ENCRYPT, len, h->nonce, QKD_NONCE_BYTES,
                                  aad, header_size(h), pt, ct, QKD_TAG_BYTES, tag) != 0)
        rc = QKD_ERR_CRYPTO;
    mbedtls_gcm_free(&gcm); /* zeroizes the expanded key */
    return rc;
}

int qkd_seal(const qkd_header *h, const uint8_t *plaintext, size_t len, uint8_t *out,
             size_t out_cap, size_t *out_len) {
    size_t need = qkd_sealed_size(h, len);
    uint8_t *ct, *tag;
    int rc;
    if (need == 0 || (len > 0 && !plaintext)) return QKD_ERR_INPUT;
    if (out_cap < need) return QKD_ERR_BUFFER;
    ct = put_be(put_header(out, h), len, 4);
    tag = ct + len;
    rc = h->mode == QKD_MODE_OTP ? seal_otp(h, plaintext, len, ct, out, tag)
                                 : seal_aead(h, plaintext, len, ct, out, tag);
    if (rc != 0) {
        mbedtls_platform_zeroize(out, need);
        return rc;
    }
    *out_len = need;
    return 0;
}
