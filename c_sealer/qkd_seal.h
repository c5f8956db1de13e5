/* qkd_seal: reference sealer of qkd-notary envelopes (version 1) for device firmware.
 * The byte format is docs/envelope-spec.md, checked byte for byte against tests/vectors.
 * Cryptography is mbedTLS (AES-256-GCM, Poly1305); nothing here is a cipher of its own.
 * Modes otp and aead; hybrid needs ML-KEM, which mbedTLS lacks (spec section 10).
 * The sealer draws no randomness: an aead nonce is an input, which firmware takes from its
 * TRNG (it must never repeat under one session key) and tests fix. A telemetry document
 * may say how its keys came ("key_delivery", spec section 7): only what is true of it. */
#ifndef QKD_SEAL_H
#define QKD_SEAL_H

#include <stddef.h>
#include <stdint.h>

#define QKD_ENVELOPE_VERSION 1
#define QKD_TAG_BYTES 16
#define QKD_NONCE_BYTES 12
#define QKD_MAC_KEY_BYTES 32
#define QKD_AEAD_KEY_BYTES 32
#define QKD_MAX_KEYS 64
#define QKD_MAX_ID_CHARS 128
#define QKD_MAX_ID_BYTES 255

typedef enum { QKD_MODE_OTP = 1, QKD_MODE_AEAD = 2 } qkd_mode;

/* One QKD key as the KME delivered it: the 16 raw bytes of its UUID key_ID, the material. */
typedef struct {
    uint8_t id[16];
    const uint8_t *material;
    size_t len;
} qkd_key;

/* Everything the header authenticates, plus the keys named in it (in header order). */
typedef struct {
    qkd_mode mode;
    const char *sender;    /* device ID: UTF-8, 1-128 characters, at most 255 bytes */
    const char *recipient; /* the notary's ID, likewise */
    uint64_t sequence;     /* strictly increasing per sender */
    uint64_t timestamp_ms; /* Unix epoch milliseconds */
    const qkd_key *keys;
    size_t key_count;
    const uint8_t *nonce; /* aead: QKD_NONCE_BYTES, unique per session key; otp: NULL */
} qkd_header;

#define QKD_ERR_INPUT (-1)  /* a header field out of its range, or a wrong nonce */
#define QKD_ERR_KEYS (-2)   /* otp: too little key material; aead: not one 32-byte key */
#define QKD_ERR_BUFFER (-3) /* out_cap smaller than qkd_sealed_size() */
#define QKD_ERR_CRYPTO (-4) /* mbedTLS failed */

/* Bytes of the binary envelope sealing len plaintext bytes under h (0 if h is invalid). */
size_t qkd_sealed_size(const qkd_header *h, size_t len);

/* Bytes of QKD key material sealing len plaintext bytes consumes in mode. */
size_t qkd_keys_needed(qkd_mode mode, size_t len);

/* Seal plaintext into out (binary form, spec section 3); 0 or a QKD_ERR_*. On success
 * *out_len is the envelope's length, its last len + QKD_TAG_BYTES bytes the ciphertext
 * and the tag; on an error out holds nothing usable. */
int qkd_seal(const qkd_header *h, const uint8_t *plaintext, size_t len, uint8_t *out,
             size_t out_cap, size_t *out_len);

#endif
