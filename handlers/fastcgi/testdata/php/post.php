<?php
$in = fopen('php://input', 'rb');
$ctx = hash_init('sha256');
$n = 0;
while (!feof($in)) {
    $chunk = fread($in, 65536);
    if ($chunk === false) break;
    $n += strlen($chunk);
    hash_update($ctx, $chunk);
}
header('Content-Type: text/plain');
echo $n, ' ', hash_final($ctx), "\n";
