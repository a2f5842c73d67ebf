/* Start-up and exit of a trivial program. */
#include <stdio.h>

int main(void)
{
	puts("Hello, world!");
	return 0;
}
