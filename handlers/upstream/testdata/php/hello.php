<?php
header("X-Script: " . $_SERVER["SCRIPT_NAME"]);
echo "hello ", $_SERVER["PATH_INFO"] ?? "", " ", $_SERVER["SHOAL_TEST"] ?? "", " ", getmypid();
