// CNftables: libnftables, the library behind nft(8), as HoldfastNetfilter sees it. Posture lists
// the ruleset (JSON) to find the input chains; the network lockdown will load its table through
// the same context. HoldfastNetfilter is the only module that imports this.
#ifndef HOLDFAST_CNFTABLES_SHIM_H
#define HOLDFAST_CNFTABLES_SHIM_H

#include <stdbool.h>
#include <stdint.h>
#include <nftables/libnftables.h>

/// The output flags are an enum of bit values; Swift sees them as separate constants of an
/// enum type that does not convert to `unsigned int`.
static inline void holdfast_nft_json_output(struct nft_ctx *ctx) {
    nft_ctx_output_set_flags(ctx, NFT_CTX_OUTPUT_JSON);
}

#endif
