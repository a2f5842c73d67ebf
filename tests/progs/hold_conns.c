/* Holds N connections to the unix socket PATH open, says "held N" once
 * they are made, and waits to be killed (a user's idle connections to
 * warpd, for the connection limit's test).
 *   hold_conns PATH N */
#include <sys/socket.h>
#include <sys/un.h>
#include "warptest.h"

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	int n = atoi(argv[2]), held = 0;
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(a.sun_path, sizeof a.sun_path, "%s", argv[1]);
	for (int i = 0; i < n; i++) {
		int s = socket(AF_UNIX, SOCK_STREAM, 0);
		if (s >= 0 && connect(s, (struct sockaddr *)&a, sizeof a) == 0)
			held++;
	}
	printf("held %d\n", held);
	fflush(stdout);
	for (;;)
		pause();
}
