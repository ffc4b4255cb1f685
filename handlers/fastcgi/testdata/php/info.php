<?php
header('Content-Type: application/json');
echo json_encode(['server' => $_SERVER, 'get' => $_GET]);
