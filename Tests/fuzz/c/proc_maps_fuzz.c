// libFuzzer target: /proc/self/maps text into the parser that finds the executable's code
// ranges (released while the supervisor idles).
#define _GNU_SOURCE
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include "cshim.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    FILE *maps = fmemopen((void *)data, size, "r");
    if (!maps) return 0;
    unsigned long ranges[8][2];
    for (int writable = 0; writable < 2; writable++) {
        rewind(maps);
        int count = cshim_parse_executable_ranges(maps, writable, ranges, 8);
        if (count < 0 || count > 8) abort();
        for (int i = 0; i < count; i++) {
            if (ranges[i][1] <= ranges[i][0]) abort();
        }
    }
    fclose(maps);
    return 0;
}
