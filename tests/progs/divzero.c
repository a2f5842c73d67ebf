/* Prints a line, then divides by a volatile zero: #DE, SIGFPE, status 136. */
#include <stdio.h>

int main(void)
{
	volatile int zero = 0;
	volatile int num = 7;
	puts("about to divide by zero");
	fflush(stdout);
	int q = num / zero;
	printf("UNREACHABLE %d\n", q);
	return 0;
}
