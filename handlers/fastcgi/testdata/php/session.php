<?php
header('X-Replace-Session: user=ann');
header('Content-Type: text/plain');
echo 'session=', $_SERVER['HTTP_SESSION'] ?? '', "\n";
