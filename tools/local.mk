# tools: the programs (see Makefile.am).
