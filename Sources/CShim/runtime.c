// What the Swift runtime would otherwise do at start-up that a scratch image cannot support.
#include "cshim.h"
#include <stddef.h>
#include <sys/auxv.h>

// The runtime's crash-backtracer set-up looks for its helper binary next to the runtime at
// start-up, and finding the runtime's own path needs /proc/self/exe: without /proc mounted it
// aborts before main. A static grpc-init ships no helper binary, so there is nothing to find:
// this definition answers "none" and keeps the runtime's path lookup out of the link.
char *swift_copyAuxiliaryExecutablePath(const char *name) {
    (void)name;
    return NULL;
}

// The process's own argc/argv, as the C library hands them to initialisers. The Swift runtime
// of a static executable reads its arguments from /proc/self/cmdline instead, which is missing
// without /proc, and decodes them as UTF-8, which changes bytes that are not.
static int saved_argc;
static char **saved_argv;

__attribute__((constructor)) static void capture_arguments(int argc, char **argv, char **envp) {
    (void)envp;
    saved_argc = argc;
    saved_argv = argv;
}

int cshim_argc(void) { return saved_argc; }

char **cshim_argv(void) { return saved_argv; }

const char *cshim_exec_path(void) { return (const char *)getauxval(AT_EXECFN); }

#include <gnu/libc-version.h>
const char *cshim_libc_version(void) { return gnu_get_libc_version(); }
