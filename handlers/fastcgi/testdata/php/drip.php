<?php
// Answers its header at once, then a line every 100 ms for 600 ms: a body
// that outlasts a short header timeout.
header('Content-Type: text/plain');
for ($i = 0; $i < 6; $i++) {
    echo "drop $i\n";
    flush();
    usleep(100000);
}
