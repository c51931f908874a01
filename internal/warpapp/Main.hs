-- A compiled GHC web app for keter's tests: Warp on $PORT, answering
-- "hello from warp ARGS" (so a test sees the bundle's args arrive).
-- Built by testkit.WarpApp with Debian's ghc and libghc-warp-dev.
{-# LANGUAGE OverloadedStrings #-}
module Main (main) where

import qualified Data.ByteString.Lazy.Char8 as L
import Network.HTTP.Types (status200)
import Network.Wai (responseLBS)
import Network.Wai.Handler.Warp (run)
import System.Environment (getArgs, getEnv)
import System.IO (BufferMode (LineBuffering), hSetBuffering, stdout)

main :: IO ()
main = do
  hSetBuffering stdout LineBuffering
  port <- read <$> getEnv "PORT"
  args <- getArgs
  putStrLn ("warp listening on " ++ show (port :: Int))
  let body = L.pack (unwords ("hello from warp" : args) ++ "\n")
  run port $ \_ respond ->
    respond (responseLBS status200 [("Content-Type", "text/plain")] body)
