# guestmem
