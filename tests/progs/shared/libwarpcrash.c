/* A shared library with debug information whose function crashes: the
 * crash line names it, its file and line, and the library. */
#include <stddef.h>

int warpcrash_depth;

int warpcrash_store(int *where, int value)
{
    warpcrash_depth++;
    *where = value; /* the crash: where is NULL */
    return warpcrash_depth;
}
