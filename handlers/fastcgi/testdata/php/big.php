<?php
header('Content-Type: application/octet-stream');
$block = str_repeat('0123456789abcdef', 4096);
for ($i = 0; $i < 64; $i++) { echo $block; }
