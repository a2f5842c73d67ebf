/* Prints a line, then writes through a NULL pointer: SIGSEGV, status 139.
 * Pointer and pointee are volatile so the compiler neither drops the store
 * nor turns it into a trap instruction (which would be SIGILL). */
#include <stdio.h>

int main(void)
{
	volatile int *volatile p = NULL;
	puts("about to dereference NULL");
	fflush(stdout);
	*p = 42;
	puts("UNREACHABLE");
	return 0;
}
