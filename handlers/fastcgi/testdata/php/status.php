<?php
header('Status: 201 Created');
header('X-Thing: made');
header('Content-Type: text/plain');
echo "created\n";
