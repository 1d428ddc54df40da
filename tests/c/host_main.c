/* Loads host_module.so's function (linked at build time) to prove the module works. */
#include <stdio.h>

int host_module_lookup_kind(const char *key);

int main(void) {
    int kind = host_module_lookup_kind("/x");
    printf("host module: lookup kind %d\n", kind);
    return kind == 3 ? 0 : 1; /* PEAKCACHE_LOOKUP_MISS */
}
