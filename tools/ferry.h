/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The subcommands of `ferry`, one file each, dispatched from the table in
 * tools/ferry.c. Each takes the arguments after the subcommand's name
 * with argv[0] set to the name to print in messages ("ferry source", or
 * "ferry-source" when run by its old name) and returns the exit status.
 */
#ifndef FERRY_TOOLS_FERRY_H
#define FERRY_TOOLS_FERRY_H

int ferry_source_main(int argc, char **argv);	/* tools/ferry-source.c */
int ferry_dest_main(int argc, char **argv);	/* tools/ferry-dest.c */
int ferry_ctl_main(int argc, char **argv);	/* tools/ferry-ctl.c */
int ferry_cert_main(int argc, char **argv);	/* tools/ferry-cert.c */
int ferry_vm_main(int argc, char **argv);	/* tools/ferry-vm/main.c */
int ferry_qemu_main(int argc, char **argv);	/* tools/ferry-qemu/main.c */

#endif
