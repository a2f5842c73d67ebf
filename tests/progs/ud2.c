/* Prints a line, then executes ud2 (__builtin_trap): SIGILL, status 132. */
#include <stdio.h>

int main(void)
{
	puts("about to execute ud2");
	fflush(stdout);
	__builtin_trap();
}
