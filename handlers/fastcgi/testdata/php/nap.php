<?php
// Takes 300 ms before its first byte: more of these at once than php-fpm
// has workers queue at php-fpm.
usleep(300000);
header('Content-Type: text/plain');
echo "rested\n";
