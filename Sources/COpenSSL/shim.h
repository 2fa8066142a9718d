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
#include <openssl/x509v3.h>
#include <openssl/ec.h>
#include <openssl/bn.h>

// OPENSSL_free is a function-like macro (it passes __FILE__/__LINE__ to CRYPTO_free).
static inline void holdfast_openssl_free(void *ptr) { OPENSSL_free(ptr); }

// BIO_get_mem_data is a macro over BIO_ctrl; Swift cannot call it.
static inline long holdfast_bio_get_mem_data(BIO *bio, char **data) { return BIO_get_mem_data(bio, data); }

// EVP_EC_gen is a macro over the variadic EVP_PKEY_Q_keygen.
static inline EVP_PKEY *holdfast_ec_p256_generate(void) { return EVP_EC_gen("P-256"); }

// X509V3_set_ctx_nodb is a macro; the extension context is a stack struct Swift should not lay out.
// Adds one extension (OpenSSL's config syntax, e.g. "critical,CA:TRUE") to `cert`, issued by `issuer`.
static inline int holdfast_x509_add_extension(X509 *cert, X509 *issuer, int nid, const char *value) {
    X509V3_CTX context;
    X509V3_set_ctx_nodb(&context);
    X509V3_set_ctx(&context, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *extension = X509V3_EXT_conf_nid(NULL, &context, nid, value);
    if (extension == NULL) return 0;
    int ok = X509_add_ext(cert, extension, -1);
    X509_EXTENSION_free(extension);
    return ok;
}

#endif
