<?php
// Counts in a file while it writes, so a test sees when it stops.
header('Content-Type: text/plain');
$marker = $_GET['marker'];
for ($i = 0; $i < 600; $i++) {
    file_put_contents($marker, (string)$i);
    echo "tick $i\n";
    flush();
    usleep(50000);
}
