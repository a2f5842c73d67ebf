/* Calls into libwarpcrash.so, which writes through a NULL pointer when
 * given any argument. `lib_crash crash FROM TO` first renames FROM over
 * TO (the library's own path: what is mapped stays the old file). */
#include <stdio.h>

int warpcrash_store(int *where, int value);

int main(int argc, char **argv)
{
    int here = 0;
    if (argc > 3 && rename(argv[2], argv[3]) != 0) {
        perror("rename");
        return 1;
    }
    printf("storing\n");
    fflush(stdout);
    warpcrash_store(argc > 1 ? NULL : &here, 7);
    printf("stored %d\n", here);
    return 0;
}
