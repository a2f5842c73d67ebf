/* Exits with the status given as argv[1], after one line on stdout. */
#include "warptest.h"

int main(int argc, char **argv)
{
	CHECK(argc == 2);
	int code = atoi(argv[1]);
	printf("exiting with %d\n", code);
	fflush(stdout);
	_exit(code);
}
