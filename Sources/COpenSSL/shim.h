// COpenSSL: libcrypto as HoldfastCrypto sees it. HoldfastCrypto is the only module that imports this.
#ifndef HOLDFAST_COPENSSL_SHIM_H
#define HOLDFAST_COPENSSL_SHIM_H

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

// OPENSSL_free is a function-like macro (it passes __FILE__/__LINE__ to CRYPTO_free).
static inline void holdfast_openssl_free(void *ptr) { OPENSSL_free(ptr); }

// BIO_get_mem_data is a macro over BIO_ctrl; Swift cannot call it.
static inline long holdfast_bio_get_mem_data(BIO *bio, char **data) { return BIO_get_mem_data(bio, data); }

#endif
