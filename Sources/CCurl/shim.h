// CCurl: libcurl as BrokerClient sees it. BrokerClient is the only module that imports this.
#ifndef HOLDFAST_CCURL_SHIM_H
#define HOLDFAST_CCURL_SHIM_H

#include <curl/curl.h>

// curl_easy_setopt and curl_easy_getinfo are variadic; Swift calls these typed wrappers instead.
static inline CURLcode holdfast_curl_setopt_long(CURL *handle, CURLoption option, long value) {
    return curl_easy_setopt(handle, option, value);
}
static inline CURLcode holdfast_curl_setopt_string(CURL *handle, CURLoption option, const char *value) {
    return curl_easy_setopt(handle, option, value);
}
static inline CURLcode holdfast_curl_setopt_pointer(CURL *handle, CURLoption option, void *value) {
    return curl_easy_setopt(handle, option, value);
}
static inline CURLcode holdfast_curl_getinfo_long(CURL *handle, CURLINFO info, long *value) {
    return curl_easy_getinfo(handle, info, value);
}
// A string the handle owns (CURLINFO_PRIMARY_IP): valid until the next transfer on it.
static inline CURLcode holdfast_curl_getinfo_string(CURL *handle, CURLINFO info, char **value) {
    return curl_easy_getinfo(handle, info, value);
}

// A struct curl_blob option (CURLOPT_CAINFO_BLOB): copied by libcurl, so the caller's bytes may go.
static inline CURLcode holdfast_curl_setopt_blob(CURL *handle, CURLoption option, const void *data, size_t length) {
    struct curl_blob blob = { (void *)data, length, CURL_BLOB_COPY };
    return curl_easy_setopt(handle, option, &blob);
}
// CURLOPT_WRITEFUNCTION takes a function pointer through the variadic setopt.
typedef size_t (*holdfast_curl_write_callback)(char *data, size_t size, size_t count, void *context);
static inline CURLcode holdfast_curl_setopt_write(CURL *handle, holdfast_curl_write_callback callback, void *context) {
    CURLcode result = curl_easy_setopt(handle, CURLOPT_WRITEFUNCTION, callback);
    if (result != CURLE_OK) return result;
    return curl_easy_setopt(handle, CURLOPT_WRITEDATA, context);
}

// CURLOPT_XFERINFOFUNCTION too; a non-zero return aborts the transfer (CURLE_ABORTED_BY_CALLBACK).
// libcurl calls it at least about once a second, idle or not.
typedef int (*holdfast_curl_progress_callback)(void *context, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow);
static inline CURLcode holdfast_curl_setopt_progress(CURL *handle, holdfast_curl_progress_callback callback, void *context) {
    CURLcode result = curl_easy_setopt(handle, CURLOPT_XFERINFOFUNCTION, callback);
    if (result != CURLE_OK) return result;
    result = curl_easy_setopt(handle, CURLOPT_XFERINFODATA, context);
    if (result != CURLE_OK) return result;
    return curl_easy_setopt(handle, CURLOPT_NOPROGRESS, 0L);
}

// CURLVERSION_NOW is a macro naming an enum constant; Swift does not import it.
static inline curl_version_info_data *holdfast_curl_version_info(void) { return curl_version_info(CURLVERSION_NOW); }

#endif
