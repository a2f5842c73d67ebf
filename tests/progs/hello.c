/* The smallest program: one line on stdout, exit 0. */
#include <stdio.h>

int main(void)
{
	puts("Hello, world!");
	puts("EXIT-SUCCESS");
	return 0;
}
